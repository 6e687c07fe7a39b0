"""``scripts/repair_history.py``: a dropped or damaged ``migration_history`` made usable again.

Without the table (dropped outside the migrations) no step can be recorded, so ``alembic``
refuses to deploy; with rows deleted, a table emptied or ``alembic_version`` stamped over
the history, ``check --live`` reports drift. One command, under the deploy lock and in one
transaction, restores a database ``alembic`` can migrate again:

* the table, its triggers and functions, as the revisions that made them make them (their
  own ``upgrade()``, which keeps what exists): a dropped table comes back empty, a
  disabled trigger is enabled again. A table missing one of its columns is moved aside
  whole into the schema ``migration_history_damaged`` (its rows kept there) and made anew;
* every row that survives stays as it is;
* what is lost is marked as lost, never as fine: a ``record_lost`` row (``not_recorded``,
  no checksum) for each revision whose record is gone or contradicts ``alembic_version``,
  and for the database's current revision when ids are missing, each saying what was found,
  when and by whom. ``check --live`` then says which records were lost instead of drift,
  and still reports a revision that ran with a text the lock does not know.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from seed_data.db import (
    MIGRATION_LOCK_KEY,
    REPO_ROOT,
    DatabaseUrlError,
    create_engine,
    database_url,
    redact,
)
from seed_data.db_errors import classify, first_line
from seed_data.migration_history import (
    DOWNGRADE,
    HISTORY_REVISION,
    HISTORY_TABLE,
    NOT_RECORDED,
    OUTCOMES_REVISION,
    PARTLY_APPLIED,
    RECORD_LOST,
    UPGRADE,
    WRITTEN,
    project_version,
)
from seed_data.refdata.applied import (
    REPAIR,
    Applied,
    applied_revisions,
    history_columns,
    missing_ids,
    read_history,
)
from seed_data.refdata.errors import BadInput
from seed_data.refdata.state import current_revisions

DAMAGED_SCHEMA = "migration_history_damaged"
# The revisions whose upgrade() makes the table as it is at head, in order.
MAKERS = (HISTORY_REVISION, OUTCOMES_REVISION)
TRIGGERS = """
SELECT tgname FROM pg_trigger
WHERE tgrelid = to_regclass(:table) AND NOT tgisinternal AND tgenabled = 'D'
"""
MARK = sa.text(
    f"INSERT INTO {HISTORY_TABLE} (revision, direction, method, database_user,"
    " application_name, client_addr, project_version, outcome, note)"
    " SELECT :revision, :direction, :method, session_user, current_setting('application_name'),"
    " inet_client_addr(), :version, :outcome, :note"
)


@dataclass
class Repair:
    """What a repair found and did, one line each."""

    done: list[str] = field(default_factory=list)
    lost: dict[str, str] = field(default_factory=dict)  # revision -> what was found


def repair(conn: sa.Connection, script: ScriptDirectory, url: sa.URL) -> Repair:
    """Repair the history of the database on ``conn`` (committed here, or nothing)."""
    shown = redact(url)
    if not conn.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}):
        raise BadInput(
            f"a migration (alembic) or a demo-data load is running on {shown}: nothing was "
            "changed; run this again once it has finished"
        )
    try:
        conn.commit()
        with conn.begin():
            return _repair(conn, script, shown)
    finally:
        conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        conn.commit()


def _repair(conn: sa.Connection, script: ScriptDirectory, shown: str) -> Repair:
    current = current_revisions(conn)
    if unknown := sorted(current - {s.revision for s in script.walk_revisions()}):
        raise BadInput(
            f"{shown} is at revision {', '.join(unknown)}, which this checkout does not have: "
            "check out the code that database runs, then repair; nothing was changed"
        )
    applied = applied_revisions(script, current)
    result = Repair()
    exists = conn.scalar(sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": HISTORY_TABLE})
    if HISTORY_REVISION not in applied and not exists:
        return result  # no history yet: `alembic upgrade` makes it
    if exists and (missing := [c for c in WRITTEN if c not in history_columns(conn)]):
        aside = _move_aside(conn)
        result.done.append(
            f"moved the damaged {HISTORY_TABLE} (no column {', '.join(missing)}) with its rows "
            f"to {aside}"
        )
        exists = False
    disabled = conn.scalars(sa.text(TRIGGERS), {"table": HISTORY_TABLE}).all()
    _make_table(conn, script)  # re-creates the triggers, enabled
    if not exists:
        result.done.append(f"made {HISTORY_TABLE} again, as its revisions make it")
    result.done += [f"enabled the trigger {name} again (it had been disabled)" for name in disabled]
    history = read_history(conn) or []
    result.lost = _lost(history, script, current, set(applied))
    if result.lost:
        _mark(conn, result.lost)
    return result


def _move_aside(conn: sa.Connection) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {DAMAGED_SCHEMA}")
    conn.exec_driver_sql(f"ALTER TABLE {HISTORY_TABLE} SET SCHEMA {DAMAGED_SCHEMA}")
    name = f"{HISTORY_TABLE}_{stamp}"
    conn.exec_driver_sql(f"ALTER TABLE {DAMAGED_SCHEMA}.{HISTORY_TABLE} RENAME TO {name}")
    return f"{DAMAGED_SCHEMA}.{name}"


def _make_table(conn: sa.Connection, script: ScriptDirectory) -> None:
    """The table, triggers and functions as head has them: the revisions' own upgrade(),
    which keeps what is there (downgrades keep it too, so this is a state they make)."""
    context = MigrationContext.configure(conn, opts={"as_sql": False})
    with Operations.context(context):
        for revision in MAKERS:
            found = script.get_revision(revision)
            assert found is not None
            found.module.upgrade()


def _lost(
    history: list[Applied], script: ScriptDirectory, current: set[str], applied: set[str]
) -> dict[str, str]:
    """revision -> why its record is lost, for every revision the history cannot vouch for."""
    lost = {}
    for revision in [s.revision for s in script.walk_revisions("base", "heads")][::-1]:
        rows = [row for row in history if row.revision == revision]
        if rows and rows[-1].lost:
            continue  # marked by an earlier repair, and nothing has run since
        last = next((row for row in reversed(rows)), None)
        if revision in applied:
            if last is None:
                lost[revision] = "applied, but its history rows are gone"
            elif last.direction == DOWNGRADE or last.outcome == PARTLY_APPLIED:
                lost[revision] = (
                    f"applied, but the last step recorded (id {last.id}) is "
                    f"{'a downgrade' if last.direction == DOWNGRADE else 'partly applied'}"
                    " (alembic_version changed outside the migrations)"
                )
        elif last is not None and last.direction == UPGRADE and last.outcome != PARTLY_APPLIED:
            lost[revision] = (
                f"not applied, but the last step recorded (id {last.id}) is an upgrade "
                "(alembic_version changed outside the migrations)"
            )
    if gaps := missing_ids(history):
        for revision in sorted(current):
            said = f"ids {', '.join(gaps)} were missing (rows deleted)"
            lost[revision] = f"{lost[revision]}; {said}" if revision in lost else said
    return lost


def _mark(conn: sa.Connection, lost: dict[str, str]) -> None:
    when = conn.scalar(sa.text("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"))
    user = conn.scalar(sa.text("SELECT session_user"))
    for revision, why in lost.items():
        conn.execute(
            MARK,
            {
                "revision": revision,
                "direction": UPGRADE,
                "method": NOT_RECORDED,
                "version": project_version(),
                "outcome": RECORD_LOST,
                "note": f"marked lost by `{REPAIR}` at {when} UTC by {user}: {why}",
            },
        )


def main(argv: list[str] | None = None) -> int:
    """``scripts/repair_history.py [--config alembic.ini]``: exit 0 repaired (or nothing to
    repair), 2 refused or failed (nothing changed), 130 interrupted (nothing changed)."""
    parser = argparse.ArgumentParser(
        prog="repair_history.py",
        description="Make a dropped or damaged migration_history usable again, keeping the rows"
        " that survive and marking what was lost (DATABASE_URL, or the embedded server).",
    )
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "alembic.ini")
    args = parser.parse_args(argv)
    url: sa.URL | None = None
    try:
        url = database_url()
        script = ScriptDirectory.from_config(Config(str(args.config)))
        engine = create_engine(url, poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                done = repair(conn, script, url)
        finally:
            engine.dispose()
    except (DatabaseUrlError, BadInput) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except sa.exc.DBAPIError as error:
        failure = classify(error, url)
        said = failure.message if failure else first_line(error, url)
        print(f"error: the repair failed and changed nothing: {said}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the repair is one transaction: nothing changed", file=sys.stderr)
        return 130
    shown = redact(url)
    if not done.done and not done.lost:
        print(
            f"nothing to repair: the history of {shown} is whole (`refdata.py check --live`"
            " says more)"
        )
        return 0
    print(f"repaired the history of {shown}:")
    for line in done.done:
        print(f"  {line}")
    for revision, why in done.lost.items():
        print(f"  marked the record of {revision} as lost: {why}")
    return 0
