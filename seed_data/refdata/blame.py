"""``refdata.py log TABLE KEY``: every revision that added, changed or removed one reference
row, oldest first, found by replaying the history in a scratch database (so hand-written
revisions count as well as generated ones); with ``--live``, when each of them was applied
to the database in ``DATABASE_URL``, from its ``migration_history``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from sqlalchemy.engine import URL

from seed_data.db import redact
from seed_data.migration_history import HISTORY_REVISION, HISTORY_TABLE
from seed_data.refdata.applied import Applied, applied_revisions, read_history
from seed_data.refdata.diff import key_text
from seed_data.refdata.errors import BadInput
from seed_data.refdata.heads import create_date, upgrade_path
from seed_data.refdata.live import known_revisions, read_only
from seed_data.refdata.replay import RowChange, change_lines, one_row, replay, value_json
from seed_data.refdata.state import scratch_database
from seed_data.refdata.tables import RefTable


@dataclass(frozen=True)
class Entry:
    """One revision that changed the row, and what it did."""

    script: Script
    change: RowChange

    @property
    def date(self) -> str | None:
        return create_date(self.script)

    @property
    def message(self) -> str:
        return " ".join((self.script.doc or "").split())


@dataclass(frozen=True)
class LiveView:
    """What one live database's history says about the revisions in a log."""

    shown: str
    current: set[str]
    applied: set[str]
    history: list[Applied] | None

    def events(self, revision: str) -> list[Applied]:
        return [row for row in self.history or () if row.revision == revision]

    def lines(self, revision: str) -> list[str]:
        if self.history is None:
            return []  # said once, at the top
        events = self.events(revision)
        if not events:
            if revision in self.applied:
                return ["  live: applied, with no history row (stamped, not run?)"]
            return ["  live: not applied"]
        lines = [f"  live: {event.describe()}" for event in events]
        if revision not in self.applied:
            lines.append("  live: not applied now")
        return lines


def blame(
    server: URL, config: Config, script: ScriptDirectory, head: str, table: RefTable, key: str
) -> list[Entry]:
    """Replay base -> head in one scratch database, reading the row after each revision."""
    entries = []
    with scratch_database(server, config, target=None) as engine:
        steps = replay(engine, config, upgrade_path(script, None, head), one_row(table, key))
        entries = [Entry(step.script, c) for step in steps for c in step.changes((table,))]
    if not entries:
        raise BadInput(
            f"{table.name} has no row with {table.key} {key!r} in any revision (base to "
            f"{head}): check the {table.key} (`refdata.py log` takes one row of a reference table)"
        )
    return entries


def live_view(url: URL, script: ScriptDirectory) -> LiveView:
    shown = redact(url)
    with read_only(url, "cannot read the history of") as conn:
        current = known_revisions(conn, script, shown)
        history = read_history(conn)
    return LiveView(shown, current, set(applied_revisions(script, current)), history)


def render_text(table: RefTable, key: str, entries: list[Entry], live: LiveView | None) -> str:
    lines = [
        f"{table.name} {key_text(key)}: {len(entries)} revision(s) changed it, oldest first (replayed "
        "on a scratch database)"
    ]
    if live is not None and live.history is None:
        at = ", ".join(sorted(live.current)) or "no revision"
        lines.append(
            f"live: {live.shown} has no {HISTORY_TABLE} table (it is at {at}; revision "
            f"{HISTORY_REVISION} makes it), so when these revisions were applied there is not "
            "recorded"
        )
    elif live is not None:
        lines.append(f"live: {live.shown}, when each was applied there (its {HISTORY_TABLE})")
    for entry in entries:
        lines += [
            "",
            f"{entry.script.revision}  {entry.date or '(no date)'}  {entry.message}",
            *change_lines(entry.change, "  "),
            *(live.lines(entry.script.revision) if live else ()),
        ]
    return "\n".join(lines)


def render_json(
    table: RefTable, key: str, entries: list[Entry], live: LiveView | None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "table": table.name,
        "key_column": table.key,
        "key": key,
        "revisions": [_entry_json(entry, live) for entry in entries],
    }
    if live is not None:
        document["database"] = live.shown
        document["history_recorded"] = live.history is not None
    return document


def _entry_json(entry: Entry, live: LiveView | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "revision": entry.script.revision,
        "date": entry.date,
        "message": entry.message,
        "change": entry.change.kind,
        "fields": {
            name: {"before": value_json(before), "after": value_json(after)}
            for name, (before, after) in entry.change.fields().items()
        },
    }
    if live is not None:
        found["applied_now"] = entry.script.revision in live.applied
        found["applied"] = [event.as_json() for event in live.events(entry.script.revision)]
    return found
