"""Reference rows as a database holds them, and a scratch database to find head's state."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import URL

from seed_data.models import Base
from seed_data.refdata.declared import Rows
from seed_data.refdata.tables import RefTable


def read_rows(conn: sa.Connection, tables: tuple[RefTable, ...]) -> dict[str, Rows]:
    """Every reference table's rows, keyed by natural key (only columns the models know)."""
    state: dict[str, Rows] = {}
    for table in tables:
        model = Base.metadata.tables[table.name]
        rows = conn.execute(sa.select(*(model.c[name] for name in table.column_names)))
        state[table.name] = {row[table.key]: dict(row) for row in (r._asdict() for r in rows)}
    return state


def current_revisions(conn: sa.Connection) -> set[str]:
    return set(MigrationContext.configure(conn).get_current_heads())


@contextmanager
def scratch_database_at_head(server: URL, config: Config) -> Iterator[sa.Engine]:
    """A throwaway database on ``server``, migrated to head, dropped afterwards."""
    name = f"refdata_scratch_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = sa.create_engine(server.set(database=name), poolclass=sa.NullPool)
    try:
        config.attributes["connection"] = engine
        command.upgrade(config, "head")
        yield engine
    finally:
        config.attributes.pop("connection", None)
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
