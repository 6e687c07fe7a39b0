"""Alembic environment: how migrations reach the database.

* The URL comes from ``seed_data.db.database_url()`` (``DATABASE_URL``, or the embedded
  server); ``alembic.ini`` holds no credentials.
* Every revision runs in its own transaction (``transaction_per_migration``), so a failed
  step rolls back alone and the steps before it stay applied and recorded.
* Online runs hold a PostgreSQL advisory lock for the whole run, so two app instances
  deploying at once queue up; the later one then finds nothing to do.
* Every step runs with a short ``lock_timeout`` and a ``statement_timeout``; a step that
  times out waiting for a lock is rolled back and retried, and a run that gives up names
  the sessions in its way (``seed_data.lock_discipline``). ``--sql`` output carries the
  same settings.
* A connection handed in by a caller (pytest-alembic, or app code) through
  ``config.attributes["connection"]`` belongs to the caller: we neither lock nor commit on
  it, and revisions take their transactional path (``autocommit_allowed`` is False).
* Every step, in every mode, appends a row to ``migration_history`` in its own transaction
  (``seed_data.migration_history``), ``--sql`` scripts included; a step that fails after
  committing part of its work leaves a ``partly_applied`` row.
* ``upgrade`` and ``downgrade`` validate before their first step (``seed_data.deploy_checks``):
  revision files against the lock, the database's history against the files; a ``--sql``
  script starts by checking where psql runs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2.extensions
from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, event, exc, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from seed_data.db import (
    MIGRATION_LOCK_KEY,
    REFERENCE_ROW_IN_USE,
    DatabaseUrlError,
    create_engine,
    database_url,
    redact,
)
from seed_data.db_errors import (
    classify,
    driver_error,
    first_line,
    server_error,
    shorten_in_use,
    sqlstate,
)
from seed_data.deploy_checks import (
    DeployOptions,
    database_problems,
    file_problems,
    lock_settings,
    offline_guard,
)
from seed_data.lock_discipline import (
    RETRIED_SQLSTATES,
    BlockerWatch,
    GaveUp,
    LockRetry,
    LockSettings,
    SettingsError,
    StepProgress,
    describe_step,
)
from seed_data.migration_history import CALLERS_TRANSACTION, ONLINE, SQL_SCRIPT, Recorder
from seed_data.models import Base
from seed_data.refdata.heads import ambiguous_downgrade
from seed_data.refdata.state import SCRATCH_RUN

config = context.config
target_metadata = Base.metadata
log = logging.getLogger("alembic.env")

if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)


# Shorter than PostgreSQL's deadlock_timeout (1 s), so the deadlock detector never fires.
ADVISORY_WAIT_SPELL = "200ms"
COMMON_OPTIONS = {
    "target_metadata": target_metadata,
    "transaction_per_migration": True,
    "compare_type": True,
    "compare_server_default": True,
}


def read_settings() -> LockSettings:
    """Timeouts and batch size from -x and the environment; refused before anything runs."""
    try:
        return LockSettings.from_sources(lock_settings(context.get_x_argument(as_dictionary=True)))
    except SettingsError as error:
        raise CommandError(str(error)) from None


# The deploy's own -x settings, and what its validation overrode (recorded with each step).
deploy = DeployOptions()


# The alembic command running this file (the name of the function it hands to env.py),
# read before configure() wraps that function: "upgrade", "downgrade", "do_stamp"...
COMMAND = getattr(context._proxy.context_opts.get("fn"), "__name__", None)  # type: ignore[attr-defined]


def runs_revisions() -> bool:
    """``alembic upgrade`` or ``downgrade`` (not ``current``, ``stamp`` or ``check``), and
    not the reference toolkit's run on a scratch database of its own."""
    return COMMAND in ("upgrade", "downgrade") and not config.attributes.get(SCRATCH_RUN)


def validate_files() -> None:
    """Before anything connects: the -x deploy settings, and the revision files."""
    global deploy
    deploy = DeployOptions.from_x(context.get_x_argument(as_dictionary=True))
    if runs_revisions():
        deploy = deploy.refuse(file_problems(context.script))


def validate_database(connection: Connection) -> None:
    """Before the first step, under the deploy lock: the database's history (read only)."""
    global deploy
    if runs_revisions():
        shown = redact(connection.engine.url)
        deploy = deploy.refuse(database_problems(connection, context.script, shown))


def guard_offline_script() -> None:
    """A --sql script's first statement checks where psql runs it (before the SET lines)."""
    if not runs_revisions():
        return
    start = context.get_starting_revision_argument()
    destination = context.get_revision_argument()
    context.execute(
        offline_guard(
            tuple([start] if isinstance(start, str) else start or ()),
            str(COMMAND),
            ",".join([destination] if isinstance(destination, str) else destination or ["base"]),
        )
    )


def configure(method: str, wrap: Callable[[Any], Any] | None = None, **options: Any) -> None:
    """``context.configure(**options)``, with every step recorded in ``migration_history``.

    ``wrap`` goes around the command's step function first (the lock-safe path's retries),
    so that the history sees each step once, however many attempts it took.
    """
    options.update(deploy.revision_options())
    context.configure(**options)
    steps = context.get_context().opts.get("fn")
    if steps is None:
        return
    global recorder
    recorder = Recorder(
        context.script,
        method,
        as_sql=context.is_offline_mode(),
        note=deploy.note(),
        teardown=deploy.teardown,
    )
    if method == ONLINE:
        event.listen(options["connection"], "commit", recorder.on_commit)
    # A caller's own callbacks too (refdata.py's replay reads the rows each step leaves).
    callbacks = config.attributes.get("on_version_apply", [])
    context.configure(
        fn=recorder.track(wrap(steps) if wrap else steps),
        on_version_apply=[recorder.on_apply, *callbacks],
        **options,
    )


recorder: Recorder | None = None  # the run's, once configured


@contextlib.contextmanager
def partly_applied_recorded(engine: Engine) -> Iterator[None]:
    """A run that fails after a step committed part of its work (backfill batches, say)
    leaves a ``partly_applied`` row for that step, so the history shows it."""
    try:
        yield
    except CommandError as error:
        try:
            if recorder is not None:
                recorder.record_partial(engine, str(error))
        except exc.SQLAlchemyError as unrecorded:  # the server is gone, say: the error stands
            log.warning("could not record the partly applied step: %s", first_line(unrecorded))
        raise


def run_migrations_offline(settings: LockSettings) -> None:
    """Write the SQL to stdout (``alembic upgrade head --sql``); no database is needed."""
    validate_files()
    configure(
        SQL_SCRIPT,
        dialect_name="postgresql",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **COMMON_OPTIONS,
        **settings.revision_options(autocommit_allowed=True),
    )
    guard_offline_script()
    # psql does not retry, so every wait may last as long as the longest online attempt.
    for name, value in settings.session_settings(settings.lock_timeout_max).items():
        context.execute(f"SET {name} = '{value}'")
    with context.begin_transaction():
        context.run_migrations()


@contextlib.contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Hold the session-level advisory lock that serialises concurrent migration runs."""
    got_it = connection.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    if not got_it:
        # scripts/load_fixtures.py holds it in shared mode while it loads or clears.
        log.info(
            "Another migration run, or a demo-data load, holds the lock; waiting for it to finish"
        )
    while not got_it:
        # Wait in short spells: a session waiting inside one statement holds a snapshot,
        # and the other run's CREATE INDEX CONCURRENTLY waits for every such snapshot to
        # end. One long wait would deadlock with it.
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{ADVISORY_WAIT_SPELL}'")
        try:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            got_it = True
        except exc.DBAPIError as error:
            if sqlstate(error) not in RETRIED_SQLSTATES:
                raise
            connection.rollback()
    # Session-level locks outlive transactions; end this one so alembic starts its own.
    connection.commit()
    try:
        yield
    finally:
        if not connection.invalidated:
            connection.rollback()
            # Our timeouts must not outlive the run on a pooled connection.
            connection.exec_driver_sql("RESET lock_timeout; RESET statement_timeout")
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            connection.commit()


def failure(
    error: BaseException, url: URL | None, progress: StepProgress | None = None
) -> CommandError:
    """One line for a server error (a DBAPIError, or an error with one behind it: see
    ``server_error``): what happened, in which step, what it left, what to do."""
    error = server_error(error) or error
    if sqlstate(error) == REFERENCE_ROW_IN_USE:
        # The guard's message already names the table, keys and referencing rows.
        diag = driver_error(error).diag
        return CommandError(f"{shorten_in_use(diag.message_primary)}\n{diag.message_hint}")
    known = classify(error, url)
    if known is not None:
        said = known.message
        if progress is not None and known.cause == "statement timeout":
            # Our own setting, which the steps run with (a role's applies before it).
            said += " (for migrations: -x statement_timeout=1min or MIGRATION_STATEMENT_TIMEOUT)"
    else:
        said = f"{first_line(error, url)} (SQLSTATE {sqlstate(error) or 'none'})"
    if progress is None:
        return CommandError(f"{describe_step(None)}: {said}")
    return CommandError(f"{describe_step(progress.current)}: {said}. {progress.outcome()}.")


def run_steps() -> None:
    with context.begin_transaction():
        try:
            context.run_migrations()
        except CommandError as error:
            if str(error) != "Ambiguous walk":
                raise
            current = context.get_context().get_current_heads()
            advice = ambiguous_downgrade(context.script, current)
            raise CommandError(advice or str(error)) from None


def run_in_callers_transaction(connection: Connection, settings: LockSettings) -> None:
    """The caller's connection: run inside its transaction, never commit, lock or retry."""
    if not connection.in_transaction():
        connection.begin()
    configure(
        CALLERS_TRANSACTION,
        connection=connection,
        **COMMON_OPTIONS,
        **settings.revision_options(autocommit_allowed=False),
    )
    try:
        run_steps()
    except exc.DBAPIError as error:
        raise failure(error, connection.engine.url) from error


def run_lock_safe(connection: Connection, engine: Engine, settings: LockSettings) -> None:
    """Our own connection: per-step timeouts, retries, and blockers named on giving up."""
    options = {**COMMON_OPTIONS, **settings.revision_options(autocommit_allowed=True)}
    pid = connection.connection.dbapi_connection.get_backend_pid()
    with BlockerWatch(engine, pid, engine.url, settings.app_wait_max / 1000) as watch:
        retry = LockRetry(connection, settings, engine.url, watch)
        configure(ONLINE, retry.plan, connection=connection, watch_paused=watch.paused, **options)
        event.listen(connection, "commit", retry.on_commit)
        try:
            retry.run(run_steps)
        except GaveUp as gave_up:
            raise CommandError(str(gave_up)) from None
        except BaseException as error:
            if interrupted(error):
                if not connection.invalidated:
                    connection.invalidate()  # send nothing more; the server rolls back
                raise CommandError(
                    f"{describe_step(retry.progress.current)}: interrupted."
                    f" {retry.progress.outcome()}; run the same command again to finish."
                ) from None
            if server_error(error) is None:
                raise
            # Also a connection lost inside an autocommit part, which SQLAlchemy reports
            # as PendingRollbackError while alembic leaves the part.
            raise failure(error, engine.url, retry.progress) from error
        finally:
            event.remove(connection, "commit", retry.on_commit)


def interrupted(error: BaseException | None) -> bool:
    """Ctrl-C, even when cleaning up after it raised something else (SQLAlchemy does)."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__context__
    return False


def wait_interruptibly(connection: psycopg2.extensions.connection) -> None:
    """psycopg2's wait callback: Ctrl-C cancels the statement running on the server.

    Like ``psycopg2.extras.wait_select``, except that the interrupt is never swallowed: if
    the statement ends before the cancel reaches the server, KeyboardInterrupt is raised
    once it has.
    """
    interrupted_here = False
    while True:
        try:
            state = connection.poll()
            if state == psycopg2.extensions.POLL_OK:
                break
            if state == psycopg2.extensions.POLL_READ:
                select.select([connection.fileno()], [], [])
            elif state == psycopg2.extensions.POLL_WRITE:
                select.select([], [connection.fileno()], [])
        except KeyboardInterrupt:
            interrupted_here = True
            connection.cancel()
    if interrupted_here:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C stops a long statement (a CONCURRENTLY build can take minutes) instead of
    being noticed only when it ends. Process-wide while it lasts, so it is put back
    afterwards (COPY cannot run in this mode)."""
    previous = psycopg2.extensions.get_wait_callback()
    psycopg2.extensions.set_wait_callback(wait_interruptibly)
    try:
        yield
    finally:
        psycopg2.extensions.set_wait_callback(previous)


def own_engine() -> Engine:
    """The engine on DATABASE_URL (or the embedded server). Its sessions say they are
    alembic (pg_stat_activity, migration_history), unless the URL or PGAPPNAME names one."""
    url = database_url()
    named = "application_name" in url.query or os.environ.get("PGAPPNAME")
    connect_args = {} if named else {"application_name": "alembic"}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def run_migrations_online(settings: LockSettings) -> None:
    validate_files()
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        validate_database(given)
        run_in_callers_transaction(given, settings)
        return

    if given is not None and not callable(getattr(given, "connect", None)):
        # Silently migrating DATABASE_URL instead of what the caller meant would be worse.
        raise CommandError(
            "config.attributes['connection'] must be a SQLAlchemy Connection or Engine,"
            f" not {type(given).__name__}"
        )
    try:
        engine = given or own_engine()
    except DatabaseUrlError as error:
        raise CommandError(str(error)) from None
    with interruptible():
        try:
            opened = engine.connect()
        except exc.OperationalError as error:
            if sqlstate(error) is not None:
                # Connected: a statement the driver runs on connecting failed (a role's
                # statement_timeout, say), and the server said why.
                raise failure(error, engine.url) from error
            reason = first_line(error, engine.url)
            raise CommandError(f"cannot connect to {redact(engine.url)}: {reason}") from None
        with opened as connection:
            if connection.in_transaction():
                # An engine-like wrapper handed back a caller's open connection (pytest-
                # alembic's experimental tests do): that transaction is theirs, as above.
                validate_database(connection)
                run_in_callers_transaction(connection, settings)
                return
            try:
                with migration_lock(connection), partly_applied_recorded(engine):
                    validate_database(connection)
                    connection.rollback()  # only read: alembic begins its own transactions
                    run_lock_safe(connection, engine, settings)
            except CommandError:
                raise  # said already, with the server's error behind it
            except Exception as error:  # taking or releasing the deploy lock
                if server_error(error) is None:
                    raise
                raise failure(error, engine.url) from error


if context.is_offline_mode():
    run_migrations_offline(read_settings())
else:
    run_migrations_online(read_settings())
