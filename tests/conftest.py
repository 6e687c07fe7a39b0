"""Fixtures: a PostgreSQL server per supported version, and a throwaway database per test.

Every database test runs once per server: the embedded PostgreSQL 18 (or the server in
``DATABASE_URL``, when set) and a private PostgreSQL 15 cluster. On CI the 15 leg must
run; elsewhere it is skipped, with the reason, when the binaries are missing.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from seed_data.db import configured_url
from tests.demo_support import Loader
from tests.helpers import ALEMBIC_INI, config_for
from tests.refdata_support import UNREACHABLE, Workspace
from tests.revision_cache import install as cache_revision_modules
from tests.servers import PG15_BIN, PgServer, embedded_server, external_server, system_server

# Python writes bytecode unless told not to, and some images tell it not to
# (PYTHONDONTWRITEBYTECODE=1). Then every alembic command in the tests compiles every
# revision file again, the largest part of what each new revision adds to the suite's
# time. The tests (and the commands they start, which inherit the environment) write it.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# The tests send Ctrl-C to the commands they start, as a user at a terminal would. A shell
# starts a background job (`pytest ... &`) with Ctrl-C ignored, the commands it starts
# inherit that, and alembic (Python) rightly keeps ignoring it: Ctrl-C would change
# nothing. A handler here is reset to the default in every command started.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# alembic runs every revision file again for each command; the tests run commands in-process
# many hundreds of times, mostly on the same files (tests/revision_cache.py).
cache_revision_modules()

DEFAULT_SERVER = "external" if configured_url() else "pg18-embedded"
SERVERS = [DEFAULT_SERVER, "pg15-system"]


@pytest.fixture(scope="session", params=SERVERS)
def pg_server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    if request.param == "external":
        yield external_server(configured_url())
    elif request.param == "pg18-embedded":
        with embedded_server() as server:
            yield server
    else:
        if not (PG15_BIN / "postgres").exists():
            reason = f"PostgreSQL 15 server binaries not found in {PG15_BIN} (set PG15_BIN)"
            if os.environ.get("CI"):
                pytest.fail(f"{reason}; CI must run the PostgreSQL 15 leg", pytrace=False)
            pytest.skip(reason)
        with system_server(PG15_BIN) as server:
            yield server


@pytest.fixture
def engine(pg_server: PgServer) -> Iterator[sa.Engine]:
    """A new, empty database on the current server, dropped after the test."""
    with pg_server.database() as engine:
        yield engine


@pytest.fixture(scope="session")
def head_template(pg_server: PgServer) -> Iterator[str]:
    """A database migrated to head once per server, cloned by ``head_engine``."""
    url = pg_server.create_database()
    try:
        engine = pg_server.engine(url.database)
        command.upgrade(config_for(engine), "head")
        engine.dispose()
        yield url.database
    finally:
        pg_server.drop_database(url.database)


@pytest.fixture
def head_engine(pg_server: PgServer, head_template: str) -> Iterator[sa.Engine]:
    """A new database at head (a copy of ``head_template``), dropped after the test."""
    with pg_server.database(template=head_template) as engine:
        yield engine


@pytest.fixture
def other_head_engine(pg_server: PgServer, head_template: str) -> Iterator[sa.Engine]:
    """A second new database at head, for a test that changes one and compares the two: a
    copy, as ``head_engine`` is, not a migration from base (which costs every revision)."""
    with pg_server.database(template=head_template) as engine:
        yield engine


@pytest.fixture
def behind_head_engine(head_engine: sa.Engine) -> sa.Engine:
    """A new database one revision below head, as a rollback of the newest release leaves
    it: a copy at head, downgraded one step (one step, not every revision from base)."""
    command.downgrade(config_for(head_engine), "-1")
    return head_engine


# pytest-alembic: its built-in tests (tests/test_migrations_builtin.py) use these.
@pytest.fixture
def alembic_engine(head_engine: sa.Engine) -> sa.Engine:
    return head_engine


@pytest.fixture
def alembic_config() -> Config:
    """With ``-x teardown=yes``: the built-ins compare schema across every downgrade, so
    the tables routine downgrades keep (KEPT_TABLES) go as the teardown drops them. That
    routine downgrades keep them is tested in tests/test_round_trip.py."""
    config = Config(str(ALEMBIC_INI))
    config.cmd_opts = argparse.Namespace(x=["teardown=yes"])
    return config


@pytest.fixture
def load_fixtures(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Loader:
    """``scripts/load_fixtures.py`` in-process: ``load_fixtures(engine, "--customers", "5")``."""
    return Loader(monkeypatch, capsys, tmp_path)


@pytest.fixture
def workspace(tmp_path: Path, pg_server: PgServer, capsys: pytest.CaptureFixture[str]) -> Workspace:
    """Copies of the migrations and declared files; scratch databases on the current server."""
    return Workspace.create(tmp_path, capsys, pg_server.admin_url)


@pytest.fixture
def files_workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Workspace:
    """The same copies, with no database server reachable: for refusals that need none."""
    return Workspace.create(tmp_path, capsys, UNREACHABLE)
