"""A migration whose connection is lost says so in one line, whatever it was doing, and the
same command run again finishes: the session ended by pg_terminate_backend, the server
stopped (``pg_ctl -m immediate``) or restarted (``-m fast``), in the batched backfill or
during a CONCURRENTLY build, both parts that commit as they go. "cannot connect" is said
only when connecting failed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tests.helpers import current_revision, run_alembic
from tests.live_support import (
    BEFORE_IT,
    SEQUENCE_NUMBERS,
    at_the_revision_before,
    kill,
    migration_running,
    numbering_problems,
    popen_alembic,
    wait_for,
    watcher,
)
from tests.servers import PgServer

CONVERSATIONS, MESSAGES_EACH = 20, 3
SLOW_BACKFILL = """
    CREATE FUNCTION test_slow_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$;
    CREATE TRIGGER test_slow_update BEFORE UPDATE ON messages FOR EACH ROW
    EXECUTE FUNCTION test_slow_update();
"""
INVALID_INDEXES = "SELECT count(*) FROM pg_index WHERE NOT indisvalid"


def numbered(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT count(sequence_no) FROM messages"))


def back_up(engine: sa.Engine) -> bool:
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT 1")) == 1
    except sa.exc.OperationalError:
        return False


def lose_the_connection(how: str, pg_server: PgServer, engine: sa.Engine, pid: int) -> None:
    if how == "pg_terminate_backend":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return
    assert pg_server.restart is not None
    pg_server.restart(how.split()[-1])  # "pg_ctl -m immediate" stops at once, then starts
    wait_for(lambda: back_up(engine), "the server to be back", timeout=60)


WHILE_BACKFILLING = "backfill"
WHILE_BUILDING = "CONCURRENTLY build"


@pytest.fixture
def before_sequence_numbers(engine: sa.Engine) -> sa.Engine:
    return at_the_revision_before(engine, CONVERSATIONS, MESSAGES_EACH)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "where"),
    [
        ("pg_terminate_backend", WHILE_BACKFILLING),
        ("pg_terminate_backend", WHILE_BUILDING),
        ("pg_ctl -m immediate", WHILE_BACKFILLING),
        ("pg_ctl -m fast", WHILE_BUILDING),
    ],
)
def test_a_connection_lost_in_an_autocommit_part_is_one_line_and_a_rerun_finishes(
    pg_server: PgServer, before_sequence_numbers: sa.Engine, how: str, where: str
) -> None:
    engine = before_sequence_numbers
    if how.startswith("pg_ctl") and pg_server.restart is None:
        pytest.skip("this suite does not control DATABASE_URL's server")
    snapshot: sa.Connection | None = None
    if where == WHILE_BACKFILLING:
        with engine.begin() as conn:
            conn.execute(sa.text(SLOW_BACKFILL))
    else:
        # An open snapshot: the build waits for it to end before the index is valid.
        snapshot = engine.connect()
        snapshot.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        snapshot.execute(sa.text("SELECT count(*) FROM customers"))
    run = popen_alembic("-x", "batch_size=2", "upgrade", SEQUENCE_NUMBERS, url=engine.url)
    try:
        with watcher(engine) as watch:
            if where == WHILE_BACKFILLING:
                started = "SELECT next_after"
                pid = wait_for(lambda: migration_running(watch, started), "the backfill")
                wait_for(lambda: numbered(engine) >= 2 * MESSAGES_EACH, "a batch to commit")
            else:
                started = "CREATE UNIQUE INDEX"
                pid = wait_for(lambda: migration_running(watch, started), "the build")
        lose_the_connection(how, pg_server, engine, pid)
        out, err = run.communicate(timeout=120)
    finally:
        kill(run)
        if snapshot is not None:
            snapshot.invalidate()  # gone with a restart; ended by us otherwise
            snapshot.close()

    assert run.returncode not in (0, None)
    assert "Traceback" not in err, err
    [line] = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert line.startswith(f"FAILED: upgrade {BEFORE_IT} -> {SEQUENCE_NUMBERS}: "), line
    assert "run the command again" in line, line
    assert "Anything this revision committed before it stays, and the next run resumes it" in line
    assert "cannot connect" not in line and "FATAL" not in line, line
    with engine.begin() as conn:
        assert current_revision(conn) == BEFORE_IT
        conn.execute(sa.text("DROP TRIGGER IF EXISTS test_slow_update ON messages"))

    result = run_alembic("upgrade", SEQUENCE_NUMBERS, url=engine.url)
    assert result.returncode == 0, result.stdout + result.stderr
    with engine.connect() as conn:
        assert current_revision(conn) == SEQUENCE_NUMBERS
        assert numbering_problems(conn) == []
        assert conn.scalar(sa.text(INVALID_INDEXES)) == 0


@pytest.fixture
def role_with(pg_server: PgServer, engine: sa.Engine) -> Callable[[str], sa.URL]:
    """A login role with a setting of its own (``ALTER ROLE ... SET``), dropped afterwards."""
    name = f"t_role_{uuid.uuid4().hex[:8]}"
    admin = pg_server.engine(isolation_level="AUTOCOMMIT")

    def make(setting: str) -> sa.URL:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN SUPERUSER")
            conn.exec_driver_sql(f"ALTER ROLE {name} SET {setting}")
        return engine.url.set(username=name)

    yield make
    with admin.connect() as conn:
        conn.exec_driver_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'"
        )
        conn.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
    admin.dispose()


def test_a_statement_timeout_on_connecting_is_not_cannot_connect(
    engine: sa.Engine, role_with: Callable[[str], sa.URL]
) -> None:
    """With the role's statement_timeout at 1 ms, the statements the driver runs on
    connecting are cancelled: the connection was made, and the line says what stopped it."""
    url = role_with("statement_timeout = '1ms'")
    started = time.monotonic()
    result = run_alembic("upgrade", "head", url=url)

    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert "cannot connect" not in line, line
    assert "statement timeout" in line and "raise it for this role or database" in line, line
    assert time.monotonic() - started < 60
    with engine.connect() as conn:
        assert current_revision(conn) is None


def test_a_server_that_is_not_there_is_cannot_connect() -> None:
    result = run_alembic("upgrade", "head", url="postgresql://app:secret@127.0.0.1:1/bank")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "FAILED: cannot connect to postgresql://app:***@127.0.0.1:1/bank" in result.stdout
