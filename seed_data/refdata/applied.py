"""What a live database's ``migration_history`` says: which text of each revision it ran,
when and by whom. Read by ``check --live`` (a revision that ran with another text than this
checkout's file is drift) and by ``log --live`` (when each revision was applied there)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from seed_data.migration_history import HISTORY_REVISION, HISTORY_TABLE, NOT_RECORDED, UPGRADE
from seed_data.refdata.heads import lineage
from seed_data.refdata.lock import file_checksum

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

    @property
    def recorded(self) -> bool:
        return self.method != NOT_RECORDED

    def when(self) -> str:
        return utc(self.finished_at) if self.finished_at else "at an unrecorded time"

    def who(self) -> str:
        """``postgres (application 'alembic', local socket, online)``."""
        host = f"host {self.client_addr}" if self.client_addr else "local socket"
        app = f"application {self.application_name or '-'!r}"
        return f"{self.database_user} ({app}, {host}, {self.method.replace('_', ' ')})"

    def describe(self) -> str:
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
    rows = conn.execute(
        sa.text(
            "SELECT revision, direction, method, checksum, started_at, finished_at,"
            f" database_user, application_name, host(client_addr) FROM {HISTORY_TABLE}"
            " ORDER BY id"
        )
    )
    return [Applied(*row) for row in rows]


def applied_revisions(script: ScriptDirectory, current: set[str]) -> list[str]:
    """The revisions a database at ``current`` has applied, oldest first."""
    ordered = [s.revision for s in script.walk_revisions("base", "heads")][::-1]
    applied = set().union(*(lineage(script, revision) for revision in current))
    return [revision for revision in ordered if revision in applied]


def history_findings(
    history: list[Applied] | None, script: ScriptDirectory, current: set[str], shown: str
) -> tuple[list[str], list[str]]:
    """(drift, notes) about the text each applied revision ran with.

    Drift: a revision whose latest upgrade ran a file with another SHA-256 than this
    checkout's, or a history table that is gone though its revision is applied. Notes:
    revisions applied before recording began, or without a row (``alembic stamp``).
    """
    applied = applied_revisions(script, current)
    if history is None:
        if HISTORY_REVISION in applied:
            return [
                f"{shown} has no {HISTORY_TABLE} table, though revision {HISTORY_REVISION} "
                "made it: it was dropped outside the migrations, and with it the record of "
                "what ran there. Restore it from a backup"
            ], []
        return [], [
            f"{shown} has no {HISTORY_TABLE} table yet (revision {HISTORY_REVISION} makes "
            "it), so which text of each revision ran there is not known"
        ]
    latest = {row.revision: row for row in history if row.direction == UPGRADE}
    drift, unrecorded, missing = [], [], []
    for revision in applied:
        row = latest.get(revision)
        if row is None:
            missing.append(revision)
        elif not row.recorded:
            unrecorded.append(revision)
        elif row.checksum != (actual := _checksum(script, revision)):
            drift.append(_edited(shown, script, row, actual))
    notes = []
    if unrecorded:
        notes.append(
            f"{len(unrecorded)} revision(s) were applied to {shown} before its history began, "
            f"so which text of them ran is not recorded: {', '.join(unrecorded)}"
        )
    if missing:
        notes.append(
            f"{shown} has no history row for {', '.join(missing)} (stamped with `alembic "
            "stamp`, not run?): which text of them ran is not known"
        )
    return drift, notes


def _checksum(script: ScriptDirectory, revision: str) -> str:
    found = script.get_revision(revision)
    assert found is not None and found.path is not None
    return file_checksum(Path(found.path))


def _edited(shown: str, script: ScriptDirectory, row: Applied, actual: str) -> str:
    found = script.get_revision(row.revision)
    assert found is not None and found.path is not None
    name = Path(found.path).name
    return (
        f"{shown} ran another text of revision {row.revision} ({name}) than this checkout "
        f"has: it was applied {row.when()} by {row.who()} from a file with SHA-256 "
        f"{(row.checksum or '')[:SHOWN_DIGITS]}..., this checkout's file has "
        f"{actual[:SHOWN_DIGITS]}.... The file was edited after it ran there, or another "
        "version of it was applied by hand. Find the text that ran (`git log -p -- "
        f"alembic/versions/{name}`) and restore the file to it, making the change in a new "
        "revision; if that text was never in git (a hotfix applied by hand), bring that "
        "database back to what the file makes"
    )
