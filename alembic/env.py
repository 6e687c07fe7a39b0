"""Alembic environment: how migrations reach the database.

* The URL comes from ``seed_data.db.database_url()`` (``DATABASE_URL``, or the embedded
  server); ``alembic.ini`` holds no credentials.
* Every revision runs in its own transaction (``transaction_per_migration``), so a failed
  step rolls back alone and the steps before it stay applied and recorded.
* Online runs hold a PostgreSQL advisory lock for the whole run, so two app instances
  deploying at once queue up; the later one then finds nothing to do.
* A connection handed in by a caller (pytest-alembic, or app code) through
  ``config.attributes["connection"]`` belongs to the caller: we neither lock nor commit on it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, exc, text
from sqlalchemy.pool import NullPool

from seed_data.db import (
    MIGRATION_LOCK_KEY,
    REFERENCE_ROW_IN_USE,
    DatabaseUrlError,
    create_engine,
    redact,
)
from seed_data.models import Base

config = context.config
target_metadata = Base.metadata
log = logging.getLogger("alembic.env")

if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)


COMMON_OPTIONS = {
    "target_metadata": target_metadata,
    "transaction_per_migration": True,
    "compare_type": True,
    "compare_server_default": True,
}


def run_migrations_offline() -> None:
    """Write the SQL to stdout (``alembic upgrade head --sql``); no database is needed."""
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **COMMON_OPTIONS,
    )
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
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    # Session-level locks outlive transactions; end this one so alembic starts its own.
    connection.commit()
    try:
        yield
    finally:
        if not connection.invalidated:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            connection.commit()


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **COMMON_OPTIONS)
    try:
        with context.begin_transaction():
            context.run_migrations()
    except exc.DBAPIError as error:
        if getattr(error.orig, "pgcode", None) != REFERENCE_ROW_IN_USE:
            raise
        # The guard's message already names the table, keys and referencing rows.
        diag = error.orig.diag
        raise CommandError(f"{diag.message_primary}\n{diag.message_hint}") from None


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        # The caller's connection: run inside its transaction, never commit or lock on it.
        if not given.in_transaction():
            given.begin()
        run_migrations(given)
        return

    if given is not None and not callable(getattr(given, "connect", None)):
        # Silently migrating DATABASE_URL instead of what the caller meant would be worse.
        raise CommandError(
            "config.attributes['connection'] must be a SQLAlchemy Connection or Engine,"
            f" not {type(given).__name__}"
        )
    try:
        engine = given or create_engine(poolclass=NullPool)
    except DatabaseUrlError as error:
        raise CommandError(str(error)) from None
    try:
        opened = engine.connect()
    except exc.OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise CommandError(f"cannot connect to {redact(engine.url)}: {reason}") from None
    with opened as connection:
        if connection.in_transaction():
            # An engine-like wrapper handed back a caller's open connection (pytest-alembic's
            # experimental tests do): that transaction is theirs, as above.
            run_migrations(connection)
        else:
            with migration_lock(connection):
                run_migrations(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
