"""What a live database's ``migration_history`` says: which text of each revision it ran,
when and by whom. Read by ``check --live`` (a revision that ran with a text the lock does
not know is drift, and so is a history that was tampered with), by ``log --live`` (when
each revision was applied there) and by ``alembic`` before it runs anything
(``seed_data.deploy_checks``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from seed_data.migration_history import (
    APPLIED,
    DOWNGRADE,
    HISTORY_REVISION,
    HISTORY_TABLE,
    NOT_RECORDED,
    PARTLY_APPLIED,
    RECORD_LOST,
    UPGRADE,
)
from seed_data.refdata.heads import lineage
from seed_data.refdata.lock import file_checksum, known_texts, lock_file

SHOWN_DIGITS = 12


@dataclass(frozen=True)
class Applied:
    """One row of ``migration_history``."""

    revision: str
    direction: str
    method: str
    checksum: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    database_user: str | None
    application_name: str | None
    client_addr: str | None
    id: int = 0
    outcome: str = APPLIED  # before revision 36b2ca9f2eb5, every row
    note: str | None = None

    @property
    def recorded(self) -> bool:
        return self.method != NOT_RECORDED

    @property
    def lost(self) -> bool:
        """A repair's mark: this revision was applied, and the record of it was lost."""
        return self.outcome == RECORD_LOST

    def when(self) -> str:
        return utc(self.finished_at) if self.finished_at else "at an unrecorded time"

    def who(self) -> str:
        """``postgres (application 'alembic', local socket, online)``."""
        host = f"host {self.client_addr}" if self.client_addr else "local socket"
        app = f"application {self.application_name or '-'!r}"
        return f"{self.database_user} ({app}, {host}, {self.method.replace('_', ' ')})"

    def describe(self) -> str:
        if self.lost:
            return f"applied, but its record was lost ({self.note})"
        if not self.recorded:
            return "applied before its history began (not recorded)"
        done = "upgraded" if self.direction == UPGRADE else "downgraded"
        return f"{done} {self.when()} by {self.who()}"

    def as_json(self) -> dict[str, object]:
        return {
            "direction": self.direction,
            "method": self.method,
            "checksum": self.checksum,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "database_user": self.database_user,
            "application_name": self.application_name,
            "client_addr": self.client_addr,
        }


def utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def read_history(conn: sa.Connection) -> list[Applied] | None:
    """Every row, oldest first; None when the database has no history table (yet)."""
    exists = conn.scalar(sa.text("SELECT to_regclass(:name) IS NOT NULL"), {"name": HISTORY_TABLE})
    if not exists:
        return None
    columns = history_columns(conn)
    outcome = "outcome" if "outcome" in columns else f"'{APPLIED}'"
    note = "note" if "note" in columns else "NULL"
    rows = conn.execute(
        sa.text(
            "SELECT revision, direction, method, checksum, started_at, finished_at,"
            f" database_user, application_name, host(client_addr), id, {outcome}, {note}"
            f" FROM {HISTORY_TABLE} ORDER BY id"
        )
    )
    return [Applied(*row) for row in rows]


def history_columns(conn: sa.Connection) -> set[str]:
    """The columns the history table has (none when it is missing)."""
    return set(
        conn.scalars(
            sa.text(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:name)"
                " AND attnum > 0 AND NOT attisdropped"
            ),
            {"name": HISTORY_TABLE},
        )
    )


def applied_revisions(script: ScriptDirectory, current: set[str]) -> list[str]:
    """The revisions a database at ``current`` has applied, oldest first."""
    ordered = [s.revision for s in script.walk_revisions("base", "heads")][::-1]
    applied = set().union(*(lineage(script, revision) for revision in current))
    return [revision for revision in ordered if revision in applied]


REPAIR = "python scripts/repair_history.py"


def history_findings(
    history: list[Applied] | None, script: ScriptDirectory, current: set[str], shown: str
) -> tuple[list[str], list[str]]:
    """(drift, notes) about what the history says ran, and whether it can be trusted.

    Drift: a history table that is gone or emptied though its revision is applied; gaps
    in its ids (rows deleted); an applied revision without a row, or whose last recorded
    step is not an upgrade (a stamp over a downgrade), or a revision recorded as upgraded
    last that alembic_version says is not applied; a revision that ran with a text the lock
    does not know. Notes: revisions applied before recording began, and records a repair
    marked as lost (``scripts/repair_history.py``).
    """
    applied = applied_revisions(script, current)
    if history is None:
        if HISTORY_REVISION in applied:
            return [
                f"{shown} has no {HISTORY_TABLE} table, though revision {HISTORY_REVISION} "
                "made it: it was dropped outside the migrations, and with it the record of "
                f"what ran there. Restore it from a backup, or run `{REPAIR}` (it makes the "
                "table again and marks what was lost as lost)"
            ], []
        return [], [
            f"{shown} has no {HISTORY_TABLE} table yet (revision {HISTORY_REVISION} makes "
            "it), so which text of each revision ran there is not known"
        ]
    if not history:
        if HISTORY_REVISION not in applied:
            return [], []  # kept by a downgrade below it, and nothing ran since
        return [
            f"{shown} has an empty {HISTORY_TABLE}, though revision {HISTORY_REVISION} "
            "recorded every revision when it was applied: it was emptied outside the "
            f"migrations (TRUNCATE, or DELETE with its trigger disabled). Restore it from a "
            f"backup, or run `{REPAIR}` (it marks what was lost as lost)"
        ], []
    texts = known_texts_of(script)
    drift = _gaps(history, shown)
    unrecorded: list[str] = []
    lost: list[tuple[str, str]] = []
    for revision in [s.revision for s in script.walk_revisions("base", "heads")][::-1]:
        rows = [row for row in history if row.revision == revision]
        real = [row for row in rows if not row.lost]
        last = real[-1] if real else None
        marked = rows[-1] if rows and rows[-1].lost else None
        if ran_unknown_text(last, texts(revision)):
            drift.append(_edited(shown, script, last, texts(revision)))
        if revision not in applied:
            if marked is not None:
                lost.append((revision, marked.note or ""))
            elif last is not None and last.direction == UPGRADE and last.outcome == APPLIED:
                drift.append(
                    f"{shown} recorded revision {revision} as upgraded last (history id "
                    f"{last.id}, {last.when()}), but alembic_version says it is not applied: "
                    "alembic_version was changed outside the migrations (`alembic stamp`?). "
                    "Find out what the database has; stamp it back, or run the downgrade"
                )
            continue
        if marked is not None:
            lost.append((revision, marked.note or ""))
        elif last is None:
            drift.append(
                f"{shown} has no {HISTORY_TABLE} row for revision {revision}, which it has "
                f"applied: every revision is recorded from revision {HISTORY_REVISION} on, so "
                "its row was deleted, or alembic_version was changed outside the migrations "
                f"(`alembic stamp`). Restore the rows from a backup, or run `{REPAIR}` (it "
                "marks the record as lost)"
            )
        elif last.direction == DOWNGRADE or last.outcome == PARTLY_APPLIED:
            step = "a downgrade" if last.direction == DOWNGRADE else "a partly applied upgrade"
            drift.append(
                f"{shown} is at a revision that includes {revision}, but the last step "
                f"recorded for it is {step} (history id {last.id}, {last.when()}): "
                "alembic_version was changed outside the migrations (`alembic stamp` over "
                "a downgrade?), so what the database has is not what ran. Find out: run the "
                f"upgrade (`alembic upgrade {revision}` after stamping back), or run "
                f"`{REPAIR}` to mark the record as lost"
            )
        elif not last.recorded:
            unrecorded.append(revision)
    notes = []
    if unrecorded:
        notes.append(
            f"{len(unrecorded)} revision(s) were applied to {shown} before its history began, "
            f"so which text of them ran is not recorded: {', '.join(unrecorded)}"
        )
    if lost:
        by_note: dict[str, list[str]] = {}
        for revision, note in lost:
            by_note.setdefault(note, []).append(revision)
        said = "; ".join(f"{', '.join(revs)} ({note})" for note, revs in by_note.items())
        notes.append(
            f"{shown} lost the record of {len(lost)} revision(s), marked by a repair, so "
            f"which text of them ran is not known: {said}"
        )
    return drift, notes


def ran_unknown_text(row: Applied | None, texts: set[str]) -> bool:
    """Whether a revision's last recorded step upgraded it from a text the lock does not know."""
    return (
        row is not None and row.recorded and row.direction == UPGRADE and row.checksum not in texts
    )


def missing_ids(history: list[Applied]) -> list[str]:
    """Ids run 1, 2, 3... (a trigger numbers them): a gap is rows deleted. Gaps before a
    repair's last mark were seen by it and are marked as lost, so they are not listed."""
    marked = max((row.id for row in history if row.lost), default=0)
    missing, expected = [], 1
    for row in history:
        if row.id > expected and row.id > marked:
            missing.append(f"{expected}" if row.id == expected + 1 else f"{expected}-{row.id - 1}")
        expected = row.id + 1
    return missing


def _gaps(history: list[Applied], shown: str) -> list[str]:
    if not (missing := missing_ids(history)):
        return []
    return [
        f"{shown} has gaps in its {HISTORY_TABLE} ids (missing: {', '.join(missing[:10])}): "
        "rows were deleted outside the migrations (with the append-only trigger disabled), "
        f"so the record of what ran is incomplete. Restore them from a backup, or run `{REPAIR}`"
        " (it marks them as lost)"
    ]


def known_texts_of(script: ScriptDirectory) -> Callable[[str], set[str]]:
    """revision -> the digests of every text of its file the lock knows (this checkout's
    file's own, for a file not locked yet)."""
    location = Path(script.dir)
    known = known_texts(location)

    def texts(revision: str) -> set[str]:
        found = script.get_revision(revision)
        assert found is not None and found.path is not None
        path = Path(found.path)
        return known.get(path.name) or {file_checksum(path)}

    return texts


def _edited(shown: str, script: ScriptDirectory, row: Applied, texts: set[str]) -> str:
    found = script.get_revision(row.revision)
    assert found is not None and found.path is not None
    name = Path(found.path).name
    actual = file_checksum(Path(found.path))
    lock = lock_file(Path(script.dir))
    return (
        f"{shown} ran another text of revision {row.revision} ({name}) than this checkout "
        f"has: it was applied {row.when()} by {row.who()} from a file with SHA-256 "
        f"{(row.checksum or '')[:SHOWN_DIGITS]}..., this checkout's file has "
        f"{actual[:SHOWN_DIGITS]}..., and no text of it in {lock} has that digest"
        f"{'' if len(texts) < 2 else f' ({len(texts)} known)'}. The file was edited after "
        "it ran there, or another version of it was applied by hand. Find the text that ran "
        f"(`git log -p -- alembic/versions/{name}`) and restore the file to it, making the "
        "change in a new revision; if that text was never in git (a hotfix applied by hand), "
        "bring that database back to what the file makes"
    )
