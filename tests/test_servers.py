"""The suite's own throwaway servers keep working whatever else runs on the machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.servers import PgServer

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
