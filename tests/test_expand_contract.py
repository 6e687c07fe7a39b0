"""Sequence numbers on a live database: the previous release keeps writing during and after
the migration, and a run killed anywhere is finished by the next one."""

from __future__ import annotations

import random
import threading
import time

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from seed_data.db_errors import first_line
from tests.helpers import (
    ALEMBIC_INI,
    config_for,
    current_revision,
    run_alembic,
    schema_fingerprint,
)
from tests.live_support import (
    BEFORE_IT,
    SEQUENCE_NUMBERS,
    at_the_revision_before,
    insert_like_previous_release,
    kill,
    migration_backend,
    migration_running,
    numbering_problems,
    popen_alembic,
    session,
    stop_midway,
    wait_for,
    watcher,
)
from tests.servers import PgServer

CONVERSATIONS = 40
MESSAGES_EACH = 3
EXISTING = CONVERSATIONS * MESSAGES_EACH


@pytest.fixture
def before_sequence_numbers(engine: sa.Engine) -> sa.Engine:
    return at_the_revision_before(engine, CONVERSATIONS, MESSAGES_EACH)


class PreviousRelease(threading.Thread):
    """Writes messages as the release before sequence numbers does, until stopped: into a
    few busy conversations (so inserts collide) and into any other."""

    def __init__(self, engine: sa.Engine, seed: int) -> None:
        super().__init__(daemon=True)
        self.engine, self.random = engine, random.Random(seed)
        self.stop = threading.Event()
        self.inserted_at: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                busy = self.random.random() < 0.5
                conversation = self.random.randint(1, 3 if busy else CONVERSATIONS)
                try:
                    insert_like_previous_release(conn, conversation)
                    conn.commit()
                    self.inserted_at.append(time.monotonic())
                except sa.exc.DBAPIError as error:
                    self.errors.append(first_line(error))
                    conn.rollback()
                time.sleep(0.002)

    def during(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.inserted_at)


def messages(conn: sa.Connection) -> int:
    return conn.scalar(sa.text("SELECT count(*) FROM messages"))


@pytest.mark.slow
def test_previous_release_writes_through_upgrade_and_downgrade_and_its_rows_are_numbered(
    before_sequence_numbers: sa.Engine,
) -> None:
    engine = before_sequence_numbers
    writers = [PreviousRelease(engine, seed) for seed in range(3)]
    for writer in writers:
        writer.start()
    try:
        windows = []
        for args in (["-x", "batch_size=2", "upgrade", SEQUENCE_NUMBERS], ["downgrade", BEFORE_IT]):
            started = time.monotonic()
            result = run_alembic(*args, url=engine.url)
            windows.append((started, time.monotonic()))
            assert result.returncode == 0, result.stderr
            if args[-1] == SEQUENCE_NUMBERS:
                with engine.connect() as conn:
                    assert numbering_problems(conn) == []
            time.sleep(0.2)  # and after it
    finally:
        for writer in writers:
            writer.stop.set()
        for writer in writers:
            writer.join()

    errors = [error for writer in writers for error in writer.errors]
    assert errors == [], f"the previous release's inserts failed: {errors[:3]}"
    for start, end in windows:
        assert sum(w.during(start, end) for w in writers) > 0, "no insert overlapped the run"
    with engine.connect() as conn:
        assert current_revision(conn) == BEFORE_IT
        assert messages(conn) == EXISTING + sum(len(w.inserted_at) for w in writers)


def test_concurrent_inserts_into_one_conversation_get_consecutive_numbers(
    before_sequence_numbers: sa.Engine,
) -> None:
    engine = before_sequence_numbers
    assert run_alembic("upgrade", SEQUENCE_NUMBERS, url=engine.url).returncode == 0
    errors: list[str] = []

    def insert_many() -> None:
        with engine.connect() as conn:
            for _ in range(40):
                try:
                    insert_like_previous_release(conn, 1)
                    conn.commit()
                except sa.exc.DBAPIError as error:
                    errors.append(first_line(error))
                    conn.rollback()

    threads = [threading.Thread(target=insert_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with engine.begin() as conn:
        # Several rows in one statement are numbered in turn too.
        conn.execute(
            sa.text(
                "INSERT INTO messages (conversation_id, role_code, content)"
                " SELECT 2, 'agent', 'previous release' FROM generate_series(1, 5)"
            )
        )
    assert errors == []
    with engine.connect() as conn:
        assert numbering_problems(conn) == []
        numbers = conn.scalars(
            sa.text(
                "SELECT max(sequence_no) FROM messages WHERE conversation_id IN (1, 2)"
                " GROUP BY conversation_id"
            )
        )
        assert sorted(numbers) == [MESSAGES_EACH + 5, MESSAGES_EACH + 160]


# The batch holding the middle conversation runs for 10 s (under the step's 15 s
# statement_timeout): the batches before it commit, and the stop comes inside it.
PAUSE_MIDWAY = f"""
CREATE FUNCTION test_pause() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(10); RETURN NEW; END $$;
CREATE TRIGGER test_pause BEFORE UPDATE ON messages FOR EACH ROW
WHEN (OLD.conversation_id = {CONVERSATIONS // 2}) EXECUTE FUNCTION test_pause();
"""


STOPS = ["SIGKILL", "SIGINT"]


@pytest.mark.slow
@pytest.mark.parametrize("how", STOPS)
def test_a_backfill_stopped_midway_is_finished_by_the_next_upgrade(
    before_sequence_numbers: sa.Engine, how: str
) -> None:
    engine = before_sequence_numbers
    with engine.begin() as conn:
        conn.execute(sa.text(PAUSE_MIDWAY))
    with watcher(engine) as watch:
        run = popen_alembic("-x", "batch_size=2", "upgrade", SEQUENCE_NUMBERS, url=engine.url)
        try:
            backend = wait_for(
                lambda: migration_running(watch, "SELECT next_after", "PgSleep"),
                "the backfill to reach the middle conversation",
            )
        except BaseException:
            kill(run)
            raise
        stop_midway(run, how, watch, backend)

    with engine.begin() as conn:
        numbered = conn.scalar(sa.text("SELECT count(sequence_no) FROM messages"))
        assert 0 < numbered < EXISTING, "the stop should have come midway through the backfill"
        assert current_revision(conn) == BEFORE_IT
        conn.execute(sa.text("DROP TRIGGER test_pause ON messages; DROP FUNCTION test_pause()"))
        # The previous release keeps writing into the half-done database.
        for conversation in (1, CONVERSATIONS // 2, CONVERSATIONS):
            insert_like_previous_release(conn, conversation)

    result = run_alembic("upgrade", SEQUENCE_NUMBERS, url=engine.url)
    assert result.returncode == 0, result.stderr
    with engine.connect() as conn:
        assert current_revision(conn) == SEQUENCE_NUMBERS
        assert messages(conn) == EXISTING + 3
        assert numbering_problems(conn) == []


INVALID_INDEXES = """
SELECT indexrelid::regclass::text FROM pg_index
WHERE indrelid = 'messages'::regclass AND NOT indisvalid
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", STOPS)
@pytest.mark.parametrize(
    ("direction", "target", "build"),
    [
        ("upgrade", SEQUENCE_NUMBERS, "CREATE UNIQUE INDEX CONCURRENTLY"),
        ("downgrade", BEFORE_IT, "CREATE INDEX CONCURRENTLY"),
    ],
)
def test_a_cancelled_index_build_is_rebuilt_by_the_next_run(
    before_sequence_numbers: sa.Engine,
    pg_server: PgServer,
    direction: str,
    target: str,
    build: str,
    how: str,
) -> None:
    engine = before_sequence_numbers
    # Without the tables downgrades keep (the history, the demo record): the upgrade to
    # head before a downgrade made them, and they stay.
    with engine.connect() as conn:
        expected = schema_fingerprint(conn, kept=False)
    if direction == "upgrade":
        with pg_server.database() as at_target, at_target.connect() as conn:
            command.upgrade(config_for(at_target), SEQUENCE_NUMBERS)
            expected = schema_fingerprint(conn, kept=False)
    else:
        assert run_alembic("upgrade", SEQUENCE_NUMBERS, url=engine.url).returncode == 0

    with session(engine, "long-report") as report, watcher(engine) as watch:
        # An open snapshot: CONCURRENTLY waits for it to end before the index is valid.
        report.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        report.execute(sa.text("SELECT count(*) FROM customers"))
        run = popen_alembic(direction, target, url=engine.url)
        try:
            backend = wait_for(lambda: migration_backend(watch, build), f"{build} to wait")
        except BaseException:
            kill(run)
            raise
        stop_midway(run, how, watch, backend)
        assert watch.scalars(sa.text(INVALID_INDEXES)).all(), "the kill left no INVALID index"
        report.rollback()

    result = run_alembic(direction, target, url=engine.url)
    assert result.returncode == 0, result.stderr
    with engine.connect() as conn:
        assert conn.scalars(sa.text(INVALID_INDEXES)).all() == []
        assert schema_fingerprint(conn, kept=False) == expected
        if direction == "upgrade":
            assert numbering_problems(conn) == []
        assert messages(conn) == EXISTING


def test_upgrade_in_a_callers_transaction_numbers_rows_without_committing(
    before_sequence_numbers: sa.Engine, pg_server: PgServer
) -> None:
    engine = before_sequence_numbers
    config = Config(str(ALEMBIC_INI))
    with engine.connect() as callers:
        config.attributes["connection"] = callers
        command.upgrade(config, SEQUENCE_NUMBERS)
        assert numbering_problems(callers) == []
        with engine.connect() as other:
            assert current_revision(other) == BEFORE_IT, "the caller's transaction was committed"
        callers.commit()
    with pg_server.database() as online:
        command.upgrade(config_for(online), SEQUENCE_NUMBERS)
        with engine.connect() as conn, online.connect() as migrated_online:
            assert current_revision(conn) == SEQUENCE_NUMBERS
            online_schema = schema_fingerprint(migrated_online)
            assert schema_fingerprint(conn) == online_schema, (
                "the transactional path must end in the same schema as the online one"
            )
