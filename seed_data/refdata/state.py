"""Reference rows as a database holds them, and a scratch database to find head's state."""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy.engine import URL

from seed_data.db import redact
from seed_data.db_errors import classify, first_line
from seed_data.models import Base
from seed_data.refdata.declared import Rows
from seed_data.refdata.errors import BadInput, database_refusal
from seed_data.refdata.signals import stop_signals_deferred
from seed_data.refdata.tables import RefTable

SCRATCH_PREFIX = "refdata_scratch_"


def read_rows(conn: sa.Connection, tables: tuple[RefTable, ...]) -> dict[str, Rows]:
    """Every reference table's rows, keyed by natural key (only columns the models know)."""
    state: dict[str, Rows] = {}
    for table in tables:
        model = Base.metadata.tables[table.name]
        query = sa.select(*(model.c[name] for name in table.column_names)).order_by(
            model.c[table.key]
        )
        state[table.name] = {
            row[table.key]: row for row in (r._asdict() for r in conn.execute(query))
        }
    return state


def current_revisions(conn: sa.Connection) -> set[str]:
    return set(MigrationContext.configure(conn).get_current_heads())


def alembic_config(
    base: Config,
    *,
    connection: sa.Engine | None = None,
    script_location: Path | None = None,
    output_buffer: TextIO | None = None,
) -> Config:
    """A config like ``base`` for the toolkit's own runs: quiet, no post-write hooks.

    ``connection`` is what env.py migrates (instead of DATABASE_URL); ``script_location``
    points at another copy of the migrations (the one a candidate revision is proved in);
    ``output_buffer`` receives ``--sql`` output.
    """
    config = Config(
        base.config_file_name,
        toml_file=base.toml_file_name,
        ini_section=base.config_ini_section,
        output_buffer=output_buffer,
        cmd_opts=argparse.Namespace(quiet=True, x=[]),  # quiet: no "Generating ..." lines
        attributes={"skip_logging_config": True},
    )
    if connection is not None:
        config.attributes["connection"] = connection
    if script_location is not None:
        config.set_main_option("script_location", str(script_location).replace("%", "%%"))
    config.file_config.remove_section("post_write_hooks")
    return config


@contextmanager
def scratch_database(server: URL, config: Config) -> Iterator[sa.Engine]:
    """A throwaway database on ``server``, migrated to head, dropped afterwards.

    It is dropped on every way out (an error, Ctrl-C, SIGTERM turned into an exception);
    if even that fails, stderr names it so that it can be dropped by hand.
    """
    name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    engine = sa.create_engine(server.set(database=name), poolclass=sa.NullPool)
    attempted = created = False
    try:
        try:
            with admin.connect() as conn:
                attempted = True
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
                created = True
        except sa.exc.DBAPIError as error:
            failure = classify(error, server)
            if failure is None or failure.cause != "permission":
                raise database_refusal(
                    f"cannot create a scratch database on {redact(server)}", error, server
                ) from None
            raise BadInput(
                f"cannot create a scratch database on {redact(server)}: "
                f"{first_line(error, server)}: the role needs CREATEDB; grant it, or point "
                "--scratch-url at a server and role that have it"
            ) from None
        _migrate_to_head(engine, config)
        yield engine
    finally:
        with stop_signals_deferred():  # a signal now would leave the database behind
            engine.dispose()
            if attempted:
                _drop(admin, name, server, report=created)
            admin.dispose()


def _migrate_to_head(engine: sa.Engine, config: Config) -> None:
    try:
        command.upgrade(alembic_config(config, connection=engine), "head")
    except sa.exc.DBAPIError as error:
        raise database_refusal(
            "cannot migrate a scratch database to head", error, engine.url
        ) from None
    except CommandError as error:
        raise BadInput(f"cannot migrate a scratch database to head: {error}") from None


def _drop(admin: sa.Engine, name: str, server: URL, report: bool) -> None:
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except sa.exc.DBAPIError as error:
        if report:
            print(
                f"warning: could not drop the scratch database {name} on {redact(server)} "
                f"({first_line(error, server)}): drop it by hand",
                file=sys.stderr,
            )
