"""Live migrations at their edges: who is named as blocking a migration, how long the steps
no app query queues behind may wait, and a run stopped between adding a constraint and
validating it."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.util import CommandError

from seed_data.lock_discipline import Blocker, BlockerWatch, LockRetry, LockSettings
from tests.demo_support import install
from tests.helpers import config_for, current_revision
from tests.live_support import (
    BEFORE_IT,
    SEQUENCE_NUMBERS,
    migration_backend,
    numbering_problems,
    seed_conversations,
    session,
    thread_signals,
    wait_for,
    watcher,
)

# Sessions as the watcher sees them in pg_stat_activity.
REPORT = Blocker(
    101, "app", "nightly-report", "idle in transaction", 6.0, 6.0, "SELECT count(*) FROM messages"
)
APP_QUERY = Blocker(
    202, "app", "web", "active", 0.01, 0.01, "SELECT * FROM messages WHERE conversation_id = 7"
)


def give_up_line(*looks: list[Blocker]) -> str:
    """The line a migration that gave up prints, after the watcher took these looks.

    Fed by hand: on a real server, an app query in the way for exactly one look (the
    watcher looks every 50 ms) cannot be staged without a race."""
    watch = BlockerWatch(None, 1, None)  # type: ignore[arg-type]  # never started: fed by hand
    for look in looks:
        watch._record(look)
    retry = LockRetry(None, LockSettings(), None, watch)  # type: ignore[arg-type]
    return retry.give_up_message("lock timeout", 4, 3.2)


def test_an_app_query_seen_in_one_look_is_not_named_beside_the_session_holding_the_lock() -> None:
    # The report holds the lock throughout; a quick app query was in the way for one look.
    line = give_up_line([REPORT, APP_QUERY], [REPORT], [REPORT])
    assert "blocked by pid 101 (user app, application 'nightly-report', idle in" in line
    assert "pid 202" not in line, f"a passing app query was named as a blocker: {line}"

    # Seen once is still better than nothing, when nothing was seen more often.
    assert "blocked by pid 202 (" in give_up_line([APP_QUERY])


def test_an_index_build_waits_for_an_old_transaction_within_the_budget_instead_of_retrying(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """CREATE INDEX CONCURRENTLY waits for every older transaction; no app query queues
    behind it, so it may wait as long as a step may retry, not the short lock timeout."""
    config = config_for(engine)
    # Alembic's logging config would replace the handler caplog records with.
    config.attributes["skip_logging_config"] = True
    command.upgrade(config, BEFORE_IT)
    short = LockSettings().lock_timeout_max / 1000  # the wait an app query may be made to bear
    failures: list[BaseException] = []

    def upgrade() -> None:
        try:
            command.upgrade(config, SEQUENCE_NUMBERS)
        except BaseException as error:  # handed to the test below
            failures.append(error)

    run = threading.Thread(target=upgrade)
    with (
        caplog.at_level(logging.INFO, logger="alembic"),
        session(engine, "long-report") as report,
        watcher(engine) as watch,
    ):
        report.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        report.execute(sa.text("SELECT count(*) FROM customers"))  # an open snapshot
        run.start()
        try:
            wait_for(
                lambda: migration_backend(watch, "CREATE UNIQUE INDEX CONCURRENTLY"),
                "the index build to wait for the open transaction",
            )
            time.sleep(short * 1.5)
        finally:
            report.rollback()
            run.join(timeout=120)
    assert not run.is_alive() and failures == []
    retries = [
        said
        for said in (r.getMessage() for r in caplog.records)
        if "retrying" in said and "long-report" in said  # not an autovacuum in the way
    ]
    assert retries == [], f"the index build gave up after the short lock timeout: {retries}"
    with engine.connect() as conn:
        assert current_revision(conn) == SEQUENCE_NUMBERS


# The run stops at VALIDATE, after ADD CONSTRAINT ... NOT VALID has committed (as a Ctrl-C,
# a lost connection or a statement timeout there would stop it).
STOP_AT_VALIDATE = """
CREATE FUNCTION test_stop_at_validate() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_query() ILIKE '%VALIDATE CONSTRAINT%' THEN
        RAISE EXCEPTION 'stopped before VALIDATE (test)';
    END IF;
END $$;
CREATE EVENT TRIGGER test_stop_at_validate ON ddl_command_start WHEN TAG IN ('ALTER TABLE')
EXECUTE FUNCTION test_stop_at_validate();
"""
CHECK_STATE = """
SELECT conname, convalidated FROM pg_constraint
WHERE conrelid = 'messages'::regclass AND contype = 'c'
"""


def test_a_run_stopped_after_adding_the_not_null_check_is_finished_by_the_next(
    engine: sa.Engine,
) -> None:
    command.upgrade(config_for(engine), BEFORE_IT)
    with engine.begin() as conn:
        seed_conversations(conn, conversations=4, messages_each=3)
    install(engine, STOP_AT_VALIDATE)

    with pytest.raises(CommandError, match="stopped before VALIDATE"):
        command.upgrade(config_for(engine), SEQUENCE_NUMBERS)
    with engine.begin() as conn:
        assert current_revision(conn) == BEFORE_IT
        checks = conn.execute(sa.text(CHECK_STATE)).all()
        assert [validated for _, validated in checks] == [False], "stopped elsewhere"
        conn.exec_driver_sql("DROP EVENT TRIGGER test_stop_at_validate")

    command.upgrade(config_for(engine), SEQUENCE_NUMBERS)

    with engine.connect() as conn:
        assert current_revision(conn) == SEQUENCE_NUMBERS
        assert numbering_problems(conn) == []
        assert conn.execute(sa.text(CHECK_STATE)).all() == [], "the temporary check is left"


def signals_blocked_in(thread: threading.Thread) -> set[signal.Signals]:
    """The signals a thread of this process blocks."""
    return thread_signals(Path(f"/proc/self/task/{thread.native_id}/status"))["SigBlk"]


def test_the_watch_thread_leaves_ctrl_c_and_sigterm_to_the_main_thread(engine: sa.Engine) -> None:
    """A signal sent to the process goes to any thread that does not block it; the watch's
    thread blocks the stop signals from its first moment, so they wake the main thread's
    wait on the server."""
    with BlockerWatch(engine, 1, None) as watch:
        blocked = signals_blocked_in(watch._thread)
        in_main = signals_blocked_in(threading.main_thread())
    assert {signal.SIGINT, signal.SIGTERM} <= blocked, f"the watch's thread blocks only {blocked}"
    assert not {signal.SIGINT, signal.SIGTERM} & in_main, f"the main thread blocks {in_main}"
