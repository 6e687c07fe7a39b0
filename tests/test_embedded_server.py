"""The default database: the embedded server that alembic and the scripts start on demand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from seed_data.db import EMBEDDED_DATABASE, REPO_ROOT, embedded_database_url, stop_embedded_server
from tests.servers import server_directory

START = "import sys; from pathlib import Path; from seed_data.db import embedded_database_url as u; u(Path(sys.argv[1]))"


@pytest.mark.slow
def test_two_first_runs_start_one_server_and_one_database() -> None:
    with server_directory() as workdir:
        two_first_runs(workdir / "pgdata")


def two_first_runs(pgdata: Path) -> None:
    try:
        # Two deploys on a fresh checkout race to initdb, start and CREATE DATABASE.
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", START, str(pgdata)],
                cwd=REPO_ROOT,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        errors = [run.communicate(timeout=120)[1] for run in runs]
        for run, stderr in zip(runs, errors, strict=True):
            assert run.returncode == 0, f"a first run failed:\n{stderr}"

        url = embedded_database_url(pgdata)
        assert url.database == EMBEDDED_DATABASE
        assert url.drivername == "postgresql+psycopg2"
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT current_database()")) == EMBEDDED_DATABASE
        engine.dispose()
    finally:
        stopped = stop_embedded_server(pgdata)
    assert stopped, "the server the first runs started should still have been running"
    assert not stop_embedded_server(pgdata), (
        "stopping a stopped server should say it was not running"
    )
