"""A read-only standby behind head: the advice must be something that can work there.

``alembic upgrade head`` fails on a standby (every write is refused), so neither
``refdata.py check --live`` nor ``scripts/load_fixtures.py`` may advise it: the check says
to upgrade the primary, and the loader refuses the read-only database before it looks at
the revision. The standby is a real one, streamed from the test server by pg_basebackup.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from tests.demo_support import Loader
from tests.refdata_support import Workspace, aim_database_url
from tests.servers import PgServer, _run_as_server_user, _server_user


@contextmanager
def standby_of(pg_server: PgServer) -> Iterator[URL]:
    """A hot standby of the test server, on a socket of its own; its admin URL."""
    workdir = Path(tempfile.mkdtemp(prefix="bank-assistant-standby-"))
    if (user := _server_user()) is not None:
        shutil.chown(workdir, user=user)
    data, host = workdir / "data", pg_server.admin_url.query["host"]
    pg_ctl = [str(pg_server.bin_dir / "pg_ctl"), "-D", str(data), "-w"]
    try:
        _run_as_server_user(
            [
                str(pg_server.bin_dir / "pg_basebackup"),
                "-h",
                str(host),
                "-U",
                "postgres",
                "-D",
                str(data),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",  # else it waits for the next spread checkpoint
            ]
        )
        _run_as_server_user(
            [
                *pg_ctl,
                "-l",
                str(workdir / "log"),
                "-o",
                f"-k {workdir} -c listen_addresses='' -c hot_standby=on",
                "start",
            ]
        )
        yield pg_server.admin_url.set(query={"host": str(workdir)})
    except subprocess.CalledProcessError as error:
        pytest.fail(f"could not start a standby: {error.stderr}")
    finally:
        if (data / "postmaster.pid").exists():
            _run_as_server_user([*pg_ctl, "-m", "immediate", "stop"], check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def test_on_a_standby_behind_head_nobody_advises_upgrading_it(
    pg_server: PgServer,
    behind_head_engine: sa.Engine,
    workspace: Workspace,
    load_fixtures: Loader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with standby_of(pg_server) as standby:
        replica = standby.set(database=behind_head_engine.url.database)
        probe = sa.create_engine(replica, poolclass=sa.NullPool)
        with probe.connect() as conn:
            assert conn.scalar(sa.text("SELECT pg_is_in_recovery()"))
        probe.dispose()

        aim_database_url(monkeypatch, replica)
        result = workspace.refdata("check", "--live")
        assert result.code == 1
        (behind,) = [line for line in result.out.splitlines() if ", head is " in line]
        assert "it is a read-only standby, so upgrade its primary" in behind
        assert "run `alembic upgrade head` there" not in result.out

        loaded = load_fixtures(replica.render_as_string(hide_password=False), "--customers", "2")
        assert loaded.code == 2
        assert "is read-only" in loaded.err and "alembic upgrade head" not in loaded.err
