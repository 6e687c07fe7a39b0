"""What ``alembic upgrade`` and ``downgrade`` check before their first step (env.py).

A deploy runs the revision files of this checkout against a database that ran some of
them already. Before anything runs, as Flyway's validate-on-migrate does:

* every revision file is the text ``alembic/versions.sha256`` records (an edit after it
  was locked is refused), and in production (``APP_ENV``/``ENVIRONMENT``, read by
  ``seed_data.environment``) every file is locked;
* online, the database's ``migration_history`` is there if its revision is applied (else
  no step could be recorded: ``scripts/repair_history.py`` restores it), and every applied
  revision ran a text of its file that the lock knows.

Each refusal is one line naming the file and what to run; nothing has run. ``-x
override=REASON`` runs anyway in an emergency: the reason, and what was overridden, go into
the ``note`` of every step the run records. A ``--sql`` script gets the file checks when it
is written, and checks the database itself where psql starts it (:func:`offline_guard`).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from seed_data.environment import production_environment
from seed_data.migration_history import HISTORY_REVISION, HISTORY_TABLE, TEARDOWN, WRITTEN
from seed_data.refdata.applied import (
    REPAIR,
    Applied,
    applied_revisions,
    history_columns,
    known_texts_of,
    ran_unknown_text,
    read_history,
)
from seed_data.refdata.errors import BadInput
from seed_data.refdata.files import shown as shown_path
from seed_data.refdata.lock import check_lock, file_checksum, lock_file, restore_rows
from seed_data.refdata.state import current_revisions

log = logging.getLogger("alembic.env")

OVERRIDE = "override"
DEPLOY_SETTINGS = (TEARDOWN, OVERRIDE)
EMERGENCY = "in an emergency, -x override=REASON runs it anyway and records why"
SHOWN_DIGITS = 12


@dataclass(frozen=True)
class DeployOptions:
    """The deploy's own ``-x`` settings: ``teardown=yes`` (downgrades drop the kept tables)
    and ``override=REASON`` (run despite failed validation, recorded in the history)."""

    teardown: bool = False
    override: str | None = None
    overridden: tuple[str, ...] = ()

    @classmethod
    def from_x(cls, x_arguments: Mapping[str, str]) -> DeployOptions:
        teardown = x_arguments.get(TEARDOWN, "no").strip().lower()
        if teardown not in ("yes", "no"):
            raise CommandError(f"-x teardown={x_arguments[TEARDOWN]!r}: yes or no")
        override = x_arguments.get(OVERRIDE)
        if override is not None and (
            not override.strip() or any(unicodedata.category(c) in ("Cc", "Cs") for c in override)
        ):
            raise CommandError(
                "-x override needs a reason on one line, e.g. -x 'override=hotfix OPS-42, "
                "approved by the on-call lead'"
            )
        return cls(teardown == "yes", override.strip() if override else None)

    def revision_options(self) -> dict[str, bool]:
        """What revisions read from ``op.get_context().opts``."""
        return {TEARDOWN: self.teardown}

    def note(self) -> str | None:
        """What each recorded step says about the override, if the run needed it."""
        if not self.overridden:
            return None
        return f"validation overridden ({self.override}): " + "; ".join(self.overridden)

    def refuse(self, problems: list[str]) -> DeployOptions:
        """Raise the first problem as a one-line refusal, unless the run is overridden."""
        if not problems:
            return self
        if self.override is None:
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise CommandError(f"{problems[0]}{more}. Nothing was run ({EMERGENCY})")
        for problem in problems:
            log.warning("override (%s): %s", self.override, problem)
        return DeployOptions(self.teardown, self.override, self.overridden + tuple(problems))


def lock_settings(x_arguments: Mapping[str, str]) -> dict[str, str]:
    """The ``-x`` settings that are not the deploy's own (seed_data.lock_discipline's)."""
    return {k: v for k, v in x_arguments.items() if k not in DEPLOY_SETTINGS}


def file_problems(script: ScriptDirectory) -> list[str]:
    """Revision files that differ from their lock lines, and in production unlocked ones."""
    location = Path(script.dir)
    try:
        status = check_lock(location)
    except BadInput as error:
        return [str(error)]
    lock = lock_file(location)
    versions = shown_path(Path(script.versions))
    problems = [
        f"{versions / name} differs from its line in {lock} (edited after it was locked): "
        + (
            restore_rows(versions / name)
            if "/" in name
            else f"restore the locked text (`git checkout -- {versions / name}`), or, if it has "
            f"never been applied anywhere, record it again with `refdata.py lock --rehash {name}`"
        )
        for name in status.edited
    ]
    if production := production_environment():
        problems += [
            f"{production}: {versions / name} is not locked in {lock}: review it and run "
            "`refdata.py lock`, then deploy the locked file"
            for name in status.unrecorded
        ]
    return problems


def database_problems(conn: sa.Connection, script: ScriptDirectory, shown: str) -> list[str]:
    """What the database's history says against running this checkout there."""
    current = current_revisions(conn)
    known = {s.revision for s in script.walk_revisions()}
    if current - known:
        return []  # alembic itself refuses a revision it cannot find, naming it
    applied = applied_revisions(script, current)
    if HISTORY_REVISION not in applied:
        return []
    history = read_history(conn)
    if history is None or missing_columns(conn):
        what = "no" if history is None else "a damaged"
        said = "" if history is None else f" (no column {', '.join(missing_columns(conn))})"
        # No override: the step's own row could not be written, so it would fail anyway.
        raise CommandError(
            f"{shown} has {what} {HISTORY_TABLE} table{said}, though revision "
            f"{HISTORY_REVISION} made it, so no step could be recorded: nothing was run. Run "
            f"`{REPAIR}` (it restores the table, keeps the rows that survive and marks what "
            "was lost), then deploy again"
        )
    texts = known_texts_of(script)
    last = {row.revision: row for row in history if not row.lost}
    return [
        _ran_other_text(shown, script, last[revision])
        for revision in applied
        if ran_unknown_text(last.get(revision), texts(revision))
    ]


def missing_columns(conn: sa.Connection) -> list[str]:
    present = history_columns(conn)
    return [name for name in WRITTEN if name not in present]


def _ran_other_text(shown: str, script: ScriptDirectory, row: Applied) -> str:
    found = script.get_revision(row.revision)
    assert found is not None and found.path is not None
    path = shown_path(Path(script.versions) / Path(found.path).name)
    return (
        f"{shown} ran revision {row.revision} from a text of {path} with SHA-256 "
        f"{(row.checksum or '')[:SHOWN_DIGITS]}... (applied {row.when()} by {row.who()}), and no "
        f"text of that file in {lock_file(Path(script.dir))} has it (this checkout's: "
        f"{file_checksum(Path(found.path))[:SHOWN_DIGITS]}...): restore the file to the text "
        f"that ran (`git log -p -- {path}`), and see `refdata.py check --live`"
    )


def offline_guard(start: tuple[str, ...], command: str, destination: str) -> str:
    """The first statement of a ``--sql`` script: where psql runs it must be where it was
    written for, and not inside a transaction block; else it stops before any change.

    In a statement that is its own transaction now() equals statement_timestamp(); under
    ``psql -1`` the transaction began earlier. (The script's own BEGIN and COMMIT would
    end psql's transaction early, so ``-1`` would not make it atomic anyway.)
    """
    expected = "ARRAY[" + ", ".join(f"'{r}'" for r in sorted(start)) + "]::text[]"
    ends = [] if destination == "base" else destination.split(",")
    arrived = "ARRAY[" + ", ".join(f"'{r}'" for r in sorted(ends)) + "]::text[]"
    written_for = ", ".join(sorted(start)) or "no revision (an empty database)"
    return f"""DO $guard$
DECLARE
    found text[];
BEGIN
    IF now() <> statement_timestamp() THEN
        RAISE EXCEPTION 'this script is running inside a transaction block (psql -1 or'
            ' --single-transaction?); nothing was changed'
            USING HINT = 'Run it without -1: psql -v ON_ERROR_STOP=1 -f FILE. Each revision'
                ' runs in a transaction of its own, and some steps must run outside one.';
    END IF;
    IF to_regclass('alembic_version') IS NULL THEN
        found := ARRAY[]::text[];
    ELSE
        SELECT coalesce(array_agg(version_num::text ORDER BY version_num), ARRAY[]::text[])
            INTO found FROM alembic_version;
    END IF;
    IF found = {arrived} THEN
        RAISE EXCEPTION 'this script was written for a database at {written_for}, but this'
            ' one is at {destination} already; nothing was changed'
            USING HINT = 'There is nothing to run: it is where this script leads.';
    END IF;
    IF found IS DISTINCT FROM {expected} THEN
        RAISE EXCEPTION 'this script was written for a database at {written_for}, but this'
            ' one is at %; nothing was changed',
            coalesce(nullif(array_to_string(found, ', '), ''), 'no revision')
            USING HINT = format('Write the script for where this database is: alembic'
                ' {command} %s{destination} --sql > FILE (a script that stopped partway is'
                ' finished this way too), then run that.',
                coalesce(nullif(array_to_string(found, ',') || ':', ':'), ''));
    END IF;
END
$guard$"""
