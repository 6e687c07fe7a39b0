"""The applied-migration history: which text of each revision ran, when, by whom, and how.

``alembic/env.py`` gives every run a :class:`Recorder`. Alembic calls its ``on_version_apply``
callback inside each step's transaction, after it has moved ``alembic_version`` and before
the commit (``MigrationContext.run_migrations``), so a step and its row commit or roll back
together:

* a step retried after a lock timeout (``seed_data.lock_discipline``) was rolled back, its
  row included; only the attempt that commits leaves one. Its start is the first attempt's,
  so the duration is what the deploy waited;
* a revision that commits part of its work in ``autocommit_block()`` gets its row in its
  last transaction, the one that moves ``alembic_version``;
* in a caller's transaction (pytest-alembic, app code) the rows are the caller's too;
* ``--sql`` writes the same INSERT as SQL: psql runs it, and the server fills in the times,
  user, application and host as it runs the script.

The table exists from revision :data:`HISTORY_REVISION` on, which is decided from the
revision graph (so ``--sql`` decides it the same way): steps below it write nothing. When
that revision is applied, its transaction records the steps this run applied before it
(with their own times), and marks every other revision below it as applied before
recording began (``not_recorded``: no checksum, no times).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext, MigrationInfo, RevisionStep
from alembic.script import ScriptDirectory

from seed_data.refdata.lock import file_checksum

HISTORY_TABLE = "migration_history"
HISTORY_REVISION = "c4b3243c2cdb"  # the revision that creates the table
PROJECT = "bank-assistant-db"
UPGRADE, DOWNGRADE = "upgrade", "downgrade"
# How a step ran (the ``method`` column).
ONLINE = "online"
SQL_SCRIPT = "sql_script"
CALLERS_TRANSACTION = "caller_transaction"
NOT_RECORDED = "not_recorded"
# --sql scripts keep step start times in settings of psql's session.
SETTING_PREFIX = "migration_history."
STEP_STARTED = SETTING_PREFIX + "step_started"

TIMESTAMP = sa.DateTime(timezone=True)

# The columns the recorder writes, as revision HISTORY_REVISION created them.
history = sa.table(
    HISTORY_TABLE,
    sa.column("revision", sa.Text),
    sa.column("direction", sa.Text),
    sa.column("method", sa.Text),
    sa.column("checksum", sa.Text),
    sa.column("started_at", TIMESTAMP),
    sa.column("finished_at", TIMESTAMP),
    sa.column("duration", sa.Interval),
    sa.column("database_user", sa.Text),
    sa.column("application_name", sa.Text),
    sa.column("client_addr", sa.Text),
    sa.column("project_version", sa.Text),
)
WRITTEN = [c.name for c in history.columns]

Steps = Callable[[Any, MigrationContext], Iterable[Any]]


def project_version() -> str | None:
    """This project's installed version (pyproject.toml), or None when it is not installed."""
    try:
        return metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class EarlierStep:
    """An upgrade this run applied before the history table existed, kept until it does."""

    revision: str
    started: sa.ColumnElement[dt.datetime]
    finished: sa.ColumnElement[dt.datetime]


class Recorder:
    """Writes one ``migration_history`` row per step, in the step's transaction.

    ``track`` wraps alembic's step function (the command's ``fn``) to note when each step
    starts; ``on_apply`` is the ``on_version_apply`` callback that writes the row.
    """

    def __init__(self, script: ScriptDirectory, method: str, *, as_sql: bool) -> None:
        self._script, self._method, self._as_sql = script, method, as_sql
        self._version = project_version()
        self._starting: tuple[tuple[str, bool], sa.ColumnElement[dt.datetime]] | None = None
        self._earlier: dict[str, EarlierStep] = {}
        self._lineage: dict[str, set[str]] = {}

    def track(self, steps: Steps) -> Steps:
        def tracked(heads: Any, context: MigrationContext) -> Iterator[Any]:
            for step in steps(heads, context):
                if isinstance(step, RevisionStep):
                    self._step_starts((step.revision.revision, step.is_upgrade), context)
                yield step

        return tracked

    def _step_starts(self, key: tuple[str, bool], context: MigrationContext) -> None:
        if self._starting is not None and self._starting[0] == key:
            return  # a retry of the same step: it started with its first attempt
        if self._as_sql:
            clock = sa.cast(sa.func.clock_timestamp(), sa.Text)
            context.execute(sa.select(sa.func.set_config(STEP_STARTED, clock, False)))
            started = sa.cast(sa.func.current_setting(STEP_STARTED), TIMESTAMP)
        else:
            started = self._server_clock(context)
        self._starting = (key, started)

    def on_apply(
        self, *, ctx: MigrationContext, step: MigrationInfo, heads: set[str], run_args: Any
    ) -> None:
        """alembic's ``on_version_apply``: inside the step's transaction, before its commit."""
        if step.is_stamp or step.up_revision_id is None:
            return  # `alembic stamp` runs no revision
        revision, upgrade = step.up_revision_id, step.is_upgrade
        started = self._started((revision, upgrade), ctx)
        if not self._table_exists_after(revision, upgrade):
            if upgrade:
                self._remember(ctx, revision, started)
            return
        if upgrade and revision == HISTORY_REVISION:
            self._record_earlier(ctx)
        self._insert(ctx, revision, UPGRADE if upgrade else DOWNGRADE, started)

    def _started(
        self, key: tuple[str, bool], context: MigrationContext
    ) -> sa.ColumnElement[dt.datetime]:
        starting, self._starting = self._starting, None
        if starting is not None and starting[0] == key:
            return starting[1]
        return sa.func.clock_timestamp()  # not tracked (never with env.py's configure)

    def _table_exists_after(self, revision: str, upgrade: bool) -> bool:
        """Whether the history table exists once this step is done: from the graph alone."""
        if revision == HISTORY_REVISION and not upgrade:
            return False  # this downgrade drops it, and the history with it
        if revision not in self._lineage:
            walked = self._script.walk_revisions("base", revision)
            self._lineage[revision] = {script.revision for script in walked}
        return HISTORY_REVISION in self._lineage[revision]

    def _remember(
        self, ctx: MigrationContext, revision: str, started: sa.ColumnElement[dt.datetime]
    ) -> None:
        if self._as_sql:
            # psql keeps both times in its session until the table exists.
            names = [f"{SETTING_PREFIX}earlier_{len(self._earlier)}_{side}" for side in "sf"]
            clock = sa.cast(sa.func.clock_timestamp(), sa.Text)
            ctx.execute(
                sa.select(
                    sa.func.set_config(names[0], sa.func.current_setting(STEP_STARTED), False),
                    sa.func.set_config(names[1], clock, False),
                )
            )
            started, finished = (sa.cast(sa.func.current_setting(n), TIMESTAMP) for n in names)
        else:
            finished = self._server_clock(ctx)
        self._earlier[revision] = EarlierStep(revision, started, finished)

    def _record_earlier(self, ctx: MigrationContext) -> None:
        """In the history revision's transaction: every revision below it, oldest first."""
        below = [s.revision for s in self._script.walk_revisions("base", HISTORY_REVISION)]
        unrecorded = [r for r in reversed(below[1:]) if r not in self._earlier]
        if unrecorded:
            ctx.execute(
                history.insert().values(
                    [
                        {"revision": r, "direction": UPGRADE, "method": NOT_RECORDED}
                        for r in unrecorded
                    ]
                )
            )
        for step in self._earlier.values():
            self._insert(ctx, step.revision, UPGRADE, step.started, step.finished)

    def _insert(
        self,
        ctx: MigrationContext,
        revision: str,
        direction: str,
        started: sa.ColumnElement[dt.datetime],
        finished: sa.ColumnElement[dt.datetime] | None = None,
    ) -> None:
        script = self._script.get_revision(revision)
        assert script is not None and script.path is not None
        step = sa.select(
            started.label("started_at"),
            (sa.func.clock_timestamp() if finished is None else finished).label("finished_at"),
        ).subquery("step")
        row = sa.select(
            sa.literal(revision, sa.Text),
            sa.literal(direction, sa.Text),
            sa.literal(self._method, sa.Text),
            sa.literal(file_checksum(Path(script.path)), sa.Text),
            step.c.started_at,
            step.c.finished_at,
            step.c.finished_at - step.c.started_at,
            sa.literal_column("session_user"),
            sa.func.current_setting("application_name"),
            sa.func.inet_client_addr(),
            sa.literal(self._version, sa.Text),
        )
        ctx.execute(history.insert().from_select(WRITTEN, row))

    @staticmethod
    def _server_clock(context: MigrationContext) -> sa.ColumnElement[dt.datetime]:
        """The server's time now, as a value to insert later (its clock, not ours)."""
        assert context.connection is not None
        now = context.connection.scalar(sa.select(sa.func.clock_timestamp()))
        return sa.cast(sa.literal(now, TIMESTAMP), TIMESTAMP)
