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

The table is made by revision :data:`HISTORY_REVISION`, and no downgrade takes it away
(nor :data:`KEPT_TABLES`' other tables): only the teardown (``alembic -x teardown=yes
downgrade base``) drops it. So a step writes its row whenever the table is there: online
the catalog says so; a ``--sql`` script knows it from the revision graph when it can (at or
above that revision), and otherwise checks as psql runs it. When that revision's upgrade
creates the table, its transaction records the steps this run applied before it (with
their own times), and marks every other revision below it as applied before recording
began (``not_recorded``: no checksum, no times); when the table was already there (kept by
an earlier downgrade), those steps wrote their own rows.

From revision :data:`OUTCOMES_REVISION` on, rows also say their ``outcome``
(``partly_applied``: :meth:`Recorder.record_partial`) and carry a ``note`` (the override a
run was validated under, ``seed_data.deploy_checks``).
"""

from __future__ import annotations

import datetime as dt
import functools
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
OUTCOMES_REVISION = "36b2ca9f2eb5"  # the revision that adds outcome and note
# Operational records that no downgrade removes (only the teardown): the history, and the
# parameters of the demo data (which no downgrade removes either).
KEPT_TABLES = (HISTORY_TABLE, "demo_data_set")
TEARDOWN = "teardown"  # the revisions' option (op.get_context().opts) that drops them
# What became of a step (the ``outcome`` column).
APPLIED, PARTLY_APPLIED, RECORD_LOST = "applied", "partly_applied", "record_lost"
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
TABLE_EXISTED = SETTING_PREFIX + "table_existed"  # before the history revision's upgrade
NOTE_LENGTH = 1000

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
noted_history = sa.table(
    HISTORY_TABLE,
    *(sa.column(c.name, c.type) for c in history.columns),
    sa.column("outcome", sa.Text),
    sa.column("note", sa.Text),
)
HISTORY_EXISTS = f"to_regclass('{HISTORY_TABLE}') IS NOT NULL"
HISTORY_SHAPE = sa.text(
    f"SELECT {HISTORY_EXISTS}, EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid ="
    f" to_regclass('{HISTORY_TABLE}') AND attname = 'note' AND NOT attisdropped)"
)

Steps = Callable[[Any, MigrationContext], Iterable[Any]]


@functools.cache  # installing another version means a new process; finding it costs ms
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


class Where:
    """Whether the history table is there after a step: known, or for psql to find out."""

    YES, NO, ASK = "yes", "no", "ask"


class Recorder:
    """Writes one ``migration_history`` row per step, in the step's transaction.

    ``track`` wraps alembic's step function (the command's ``fn``) to note when each step
    starts; ``on_apply`` is the ``on_version_apply`` callback that writes the row.
    ``note`` goes into every row (the override the run was validated under); ``teardown``
    says the history revision's downgrade drops the table.
    """

    def __init__(
        self,
        script: ScriptDirectory,
        method: str,
        *,
        as_sql: bool,
        note: str | None = None,
        teardown: bool = False,
    ) -> None:
        self._script, self._method, self._as_sql = script, method, as_sql
        self._note, self._teardown = note, teardown
        self._version = project_version()
        self._starting: tuple[tuple[str, bool], sa.ColumnElement[dt.datetime]] | None = None
        self._earlier: dict[str, EarlierStep] = {}
        self._lineage: dict[str, set[str]] = {}
        self._existed_before: bool | None = None  # online, before the history revision's upgrade
        self._commits = 0  # online: commits since the current step started
        self.current: tuple[str, bool] | None = None  # the step started and not yet recorded

    def track(self, steps: Steps) -> Steps:
        def tracked(heads: Any, context: MigrationContext) -> Iterator[Any]:
            for step in steps(heads, context):
                if isinstance(step, RevisionStep):
                    self._step_starts((step.revision.revision, step.is_upgrade), context)
                yield step

        return tracked

    def on_commit(self, _connection: Any) -> None:
        """SQLAlchemy's ``commit`` event on an online run's connection."""
        self._commits += 1

    def _step_starts(self, key: tuple[str, bool], context: MigrationContext) -> None:
        if self._starting is not None and self._starting[0] == key:
            return  # a retry of the same step: it started with its first attempt
        self.current, self._commits = key, 0
        if self._as_sql:
            clock = sa.cast(sa.func.clock_timestamp(), sa.Text)
            context.execute(sa.select(sa.func.set_config(STEP_STARTED, clock, False)))
            if key == (HISTORY_REVISION, True):
                existed = sa.cast(sa.text(HISTORY_EXISTS), sa.Text)
                context.execute(sa.select(sa.func.set_config(TABLE_EXISTED, existed, False)))
            started = sa.cast(sa.func.current_setting(STEP_STARTED), TIMESTAMP)
        else:
            if key == (HISTORY_REVISION, True):
                self._existed_before = self._shape(context)[0]
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
        self.current = None
        direction = UPGRADE if upgrade else DOWNGRADE
        if upgrade and revision == HISTORY_REVISION:
            self._record_earlier(ctx)
            self._insert(ctx, revision, direction, started)
            return
        where, noted = self._where_after(ctx, revision, upgrade)
        if where != Where.YES and upgrade:
            self._remember(ctx, revision, started)
        if where == Where.YES:
            self._insert(ctx, revision, direction, started, noted=noted)
        elif where == Where.ASK:
            self._insert_if_there(ctx, self._row(revision, direction, started))

    def _started(
        self, key: tuple[str, bool], context: MigrationContext
    ) -> sa.ColumnElement[dt.datetime]:
        starting, self._starting = self._starting, None
        if starting is not None and starting[0] == key:
            return starting[1]
        return sa.func.clock_timestamp()  # not tracked (never with env.py's configure)

    def _where_after(self, ctx: MigrationContext, revision: str, upgrade: bool) -> tuple[str, bool]:
        """Whether the table is there once this step is done, and whether it has ``note``.

        Online the catalog says. A script knows it from the graph at or above the history
        revision; below it, a table an earlier downgrade kept may be there: psql checks.
        """
        if not self._as_sql:
            exists, has_note = self._shape(ctx)
            return (Where.YES if exists else Where.NO), has_note
        after = self._lineage_of(revision)
        if not upgrade:
            if revision == HISTORY_REVISION:
                return (Where.NO if self._teardown else Where.YES), False
            after = after - {revision}
        if HISTORY_REVISION in after:
            return Where.YES, OUTCOMES_REVISION in after
        return Where.ASK, False

    def _lineage_of(self, revision: str) -> set[str]:
        if revision not in self._lineage:
            walked = self._script.walk_revisions("base", revision)
            self._lineage[revision] = {script.revision for script in walked}
        return self._lineage[revision]

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
        """In the history revision's upgrade, when it creates the table: every revision
        below it, oldest first (when an earlier downgrade kept the table, each of the steps
        that ran since wrote its own row)."""
        if not self._as_sql and self._existed_before:
            return
        below = [s.revision for s in self._script.walk_revisions("base", HISTORY_REVISION)]
        unrecorded = [r for r in reversed(below[1:]) if r not in self._earlier]
        rows: list[sa.Executable] = []
        if unrecorded:
            rows.append(
                history.insert().values(
                    [
                        {"revision": r, "direction": UPGRADE, "method": NOT_RECORDED}
                        for r in unrecorded
                    ]
                )
            )
        for step in self._earlier.values():
            rows.append(self._row(step.revision, UPGRADE, step.started, step.finished))
        if not self._as_sql:
            for row in rows:
                ctx.execute(row)
        elif rows:
            condition = f"current_setting('{TABLE_EXISTED}') = 'false'"
            ctx.execute(sa.text(self._do_if(ctx, condition, rows)))

    def _insert(
        self,
        ctx: MigrationContext,
        revision: str,
        direction: str,
        started: sa.ColumnElement[dt.datetime],
        *,
        noted: bool = False,
    ) -> None:
        ctx.execute(self._row(revision, direction, started, noted=noted))

    def _row(
        self,
        revision: str,
        direction: str,
        started: sa.ColumnElement[dt.datetime],
        finished: sa.ColumnElement[dt.datetime] | None = None,
        *,
        noted: bool = False,
        outcome: str = APPLIED,
        note: str | None = None,
    ) -> sa.Insert:
        script = self._script.get_revision(revision)
        assert script is not None and script.path is not None
        step = sa.select(
            started.label("started_at"),
            (sa.func.clock_timestamp() if finished is None else finished).label("finished_at"),
        ).subquery("step")
        columns: list[Any] = [
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
        ]
        note = note or self._note
        if not (noted and (note or outcome != APPLIED)):
            return history.insert().from_select(WRITTEN, sa.select(*columns))
        columns += [
            sa.literal(outcome, sa.Text),
            sa.literal(note[:NOTE_LENGTH] if note else None, sa.Text),
        ]
        return noted_history.insert().from_select(
            [*WRITTEN, "outcome", "note"], sa.select(*columns)
        )

    def _insert_if_there(self, ctx: MigrationContext, row: sa.Executable) -> None:
        """A script's row for a step below the history revision: written if psql finds the
        table (kept by an earlier downgrade)."""
        ctx.execute(sa.text(self._do_if(ctx, HISTORY_EXISTS, [row])))

    @staticmethod
    def _do_if(ctx: MigrationContext, condition: str, statements: list[sa.Executable]) -> str:
        """A DO block running ``statements`` when ``condition`` holds (plpgsql plans a
        statement only when it runs, so a missing table is no error in a branch not taken)."""
        body = "".join(
            f"        {s.compile(dialect=ctx.dialect, compile_kwargs={'literal_binds': True})};\n"
            for s in statements
        )
        return (
            f"DO $history$\nBEGIN\n    IF {condition} THEN\n{body}    END IF;\nEND\n$history$"
        ).replace(":", "\\:")

    def record_partial(self, engine: sa.Engine, said: str) -> bool:
        """After a failure: a ``partly_applied`` row for the step that failed having
        committed part of its work (online). In a transaction of its own, on a connection
        of its own (the run's may be gone); True if written."""
        if self.current is None or not self._commits or self._as_sql:
            return False
        revision, upgrade = self.current
        with engine.connect() as conn:
            exists, has_note = conn.execute(HISTORY_SHAPE).one()
            if not (exists and has_note):
                return False
            started = self._starting[1] if self._starting else sa.func.clock_timestamp()
            conn.execute(
                self._row(
                    revision,
                    UPGRADE if upgrade else DOWNGRADE,
                    started,
                    noted=True,
                    outcome=PARTLY_APPLIED,
                    note=said,
                )
            )
            conn.commit()
        return True

    @staticmethod
    def _shape(context: MigrationContext) -> tuple[bool, bool]:
        """Online: whether the history table is there, and whether it has ``note``."""
        assert context.connection is not None
        exists, has_note = context.connection.execute(HISTORY_SHAPE).one()
        return bool(exists), bool(has_note)

    @staticmethod
    def _server_clock(context: MigrationContext) -> sa.ColumnElement[dt.datetime]:
        """The server's time now, as a value to insert later (its clock, not ours)."""
        assert context.connection is not None
        now = context.connection.scalar(sa.select(sa.func.clock_timestamp()))
        return sa.cast(sa.literal(now, TIMESTAMP), TIMESTAMP)
