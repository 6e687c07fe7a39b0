"""Lock holds are bounded while a migration runs: once an app query has waited longer than
``app_wait_max`` for a lock the migration holds, the migration's statement is cancelled,
its step rolls back (in an autocommit part, the current batch) and the run stops with one
line; and a blocked deploy stalls the app at most once per blocking transaction."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from seed_data.db import MIGRATION_LOCK_KEY
from seed_data.db_errors import first_line
from tests.helpers import current_revision, insert_account, insert_customer, run_alembic
from tests.helpers import snapshot_rows as rows_of
from tests.live_support import (
    BEFORE_IT,
    SEQUENCE_NUMBERS,
    at_the_revision_before,
    numbering_problems,
    popen_alembic,
    session,
    wait_for,
)
from tests.refdata_support import Workspace
from tests.revision_samples import FILL_IN_THE_SAME_TRANSACTION, UNDO_FILL

BUDGET = 1.0  # app_wait_max's default, in seconds
SLACK = 0.5  # what the budget may be overrun by: a look every 50 ms, the cancel, the rollback


def failure_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]


@dataclass(eq=False)
class App(threading.Thread):
    """Runs ``statement`` every 20 ms on its own connection and keeps each one's duration."""

    engine: sa.Engine
    statement: str
    params: dict[str, object] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    conn.execute(sa.text(self.statement), self.params)
                    conn.commit()
                except sa.exc.DBAPIError as error:
                    self.errors.append(first_line(error))
                    conn.rollback()
                self.seconds.append(time.monotonic() - started)
                time.sleep(0.02)

    @property
    def longest(self) -> float:
        return max(self.seconds, default=0.0)


@contextmanager
def app(engine: sa.Engine, statement: str, **params: object) -> Iterator[App]:
    traffic = App(engine, statement, params)
    traffic.start()
    try:
        yield traffic
    finally:
        traffic.stop.set()
        traffic.join(timeout=30)


def stopped_while_the_app_reads_transactions(
    workspace: Workspace, engine: sa.Engine
) -> tuple[subprocess.CompletedProcess[str], App, float]:
    """`alembic upgrade head` in the workspace while the app counts transactions every 20 ms;
    it must fail, in lines and not a traceback. Its result, the app's reads, its seconds."""
    with app(engine, "SELECT count(*) FROM transactions") as reads:
        time.sleep(0.2)
        started = time.monotonic()
        result = run_alembic("-c", str(workspace.ini), "upgrade", "head", url=engine.url)
        took = time.monotonic() - started
        time.sleep(0.2)
    assert result.returncode != 0, "a step holding its lock past the budget must fail"
    assert "Traceback" not in result.stdout + result.stderr
    return result, reads, took


def slow_updates(table: str, seconds: float, when: str = "true") -> str:
    """A trigger that makes every update of ``table`` matching ``when`` take ``seconds``: a
    big table in a small test."""
    return f"""
        CREATE FUNCTION test_slow_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$;
        CREATE TRIGGER test_slow_update BEFORE UPDATE ON {table} FOR EACH ROW
        WHEN ({when}) EXECUTE FUNCTION test_slow_update();
    """


@pytest.mark.slow
def test_a_column_filled_under_the_alter_s_lock_is_stopped_within_the_budget(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    """The unsafe revision: ADD COLUMN and an UPDATE of every transaction in one transaction.
    The app's reads of transactions wait for its ACCESS EXCLUSIVE lock; at most the budget."""
    with head_engine.begin() as conn:
        customer = insert_customer(conn, "CUST-HOLD01")
        insert_account(conn, customer, "70000001", "everyday_current", "current_account")
        conn.execute(
            sa.text(
                "INSERT INTO transactions (account_id, amount, merchant, category_code)"
                " SELECT (SELECT id FROM accounts), -g, 'Tesco', 'groceries'"
                " FROM generate_series(1, 400) AS g"
            )
        )
        conn.execute(sa.text(slow_updates("transactions", 0.01)))  # 4 s for the UPDATE
    with head_engine.connect() as conn:
        before, revision = rows_of(conn), current_revision(conn)
    workspace.add_revision("amount in pence", FILL_IN_THE_SAME_TRANSACTION, UNDO_FILL)

    result, reads, took = stopped_while_the_app_reads_transactions(workspace, head_engine)

    [line] = failure_lines(result.stdout)
    for expected in (
        "stopped: an app query waited ",
        "for ACCESS EXCLUSIVE on transactions, which this step held, longer than app_wait_max"
        " (1s; -x app_wait_max or MIGRATION_APP_WAIT_MAX)",
        "query: SELECT count(*) FROM transactions",
        "The step's statement was cancelled: UPDATE transactions SET amount_pence",
        "This step was rolled back and changed nothing",
        "commit after the step that takes the lock, then change the rows in batches",
        "docs/schema-revisions.md",
    ):
        assert expected in line, f"{expected!r} missing from:\n{line}"
    assert reads.errors == []
    assert reads.longest <= BUDGET + SLACK, (
        f"the app waited {reads.longest:.2f} s ({took:.1f} s run)"
    )
    with head_engine.connect() as conn:
        assert current_revision(conn) == revision
        assert rows_of(conn) == before, "the stopped step must leave the database as it was"
        assert not conn.scalar(
            sa.text(
                "SELECT count(*) FROM information_schema.columns"
                " WHERE table_name = 'transactions' AND column_name = 'amount_pence'"
            )
        )


def test_a_lock_held_between_statements_is_released_by_ending_the_session(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    """A step that holds its lock while no statement of it runs (Python work between two
    statements) has nothing to cancel: its session is ended, and the app waits no longer
    than when a statement is cancelled."""
    path = workspace.add_revision("lock then work", "LOCK TABLE transactions", "SELECT 1")
    locked = "    op.execute('LOCK TABLE transactions')\n"
    text = path.read_text(encoding="utf-8")
    assert locked in text, text
    text = text.replace(
        locked, f"{locked}    time.sleep(6)  # the lock held, no statement running\n"
    )
    path.write_text(text.replace("from alembic import op", "import time\n\nfrom alembic import op"))
    assert workspace.refdata("lock", "--rehash", path.name).code == 0
    with head_engine.connect() as conn:
        revision = current_revision(conn)

    result, reads, took = stopped_while_the_app_reads_transactions(workspace, head_engine)

    [line] = failure_lines(result.stdout)
    assert "stopped: an app query waited " in line and "on transactions" in line, line
    assert (
        "The step held the lock between two statements (the last: LOCK TABLE transactions),"
        " where a cancel stops nothing, so its session was ended." in line
    ), line
    assert reads.errors == []
    assert reads.longest <= BUDGET + SLACK, f"the app waited {reads.longest:.2f} s ({took:.1f} s)"
    with head_engine.connect() as conn:
        assert current_revision(conn) == revision


@pytest.fixture
def before_sequence_numbers(engine: sa.Engine) -> sa.Engine:
    return at_the_revision_before(engine, conversations=20, messages_each=3)


@pytest.mark.slow
def test_a_batch_holding_rows_too_long_rolls_back_alone_and_the_next_run_resumes(
    before_sequence_numbers: sa.Engine,
) -> None:
    """In an autocommit part the cancelled statement is one batch: the batches committed
    before it stay, and the next run numbers the rest."""
    engine = before_sequence_numbers
    with engine.begin() as conn:
        # The batch holding conversation 12 (batch_size=2: 11 and 12) takes 3 s.
        conn.execute(sa.text(slow_updates("messages", 1, "OLD.conversation_id = 12")))
    # The previous release writes into conversation 12; its insert locks the conversation,
    # as the batch does.
    insert = "INSERT INTO messages (conversation_id, role_code, content) VALUES (12, 'agent', 'x')"
    with app(engine, insert) as writes:
        result = run_alembic("-x", "batch_size=2", "upgrade", SEQUENCE_NUMBERS, url=engine.url)
        time.sleep(0.2)

    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    [line] = failure_lines(result.stdout)
    assert "for row locks on conversations (rows this step changed or locked)" in line, line
    assert "The step's statement was cancelled: SELECT next_after" in line
    assert "Anything this revision committed before it stays, and the next run resumes it" in line
    assert "make its batches smaller" in line and "-x batch_size" in line
    assert writes.errors == []
    assert writes.longest <= BUDGET + SLACK, f"the app waited {writes.longest:.2f} s"
    with engine.begin() as conn:
        numbered = conn.scalar(sa.text("SELECT count(sequence_no) FROM messages"))
        assert 0 < numbered < 60, "the batches before the slow one stay committed"
        assert current_revision(conn) == BEFORE_IT
        conn.execute(sa.text("DROP TRIGGER test_slow_update ON messages"))

    result = run_alembic("-x", "batch_size=2", "upgrade", SEQUENCE_NUMBERS, url=engine.url)
    assert result.returncode == 0, result.stderr
    with engine.connect() as conn:
        assert current_revision(conn) == SEQUENCE_NUMBERS
        assert numbering_problems(conn) == []


@pytest.mark.slow
def test_a_blocked_step_stalls_the_app_once_while_its_blocker_stays(
    before_sequence_numbers: sa.Engine,
) -> None:
    """While the same transaction blocks it, a step does not try again (each try would make
    the app's queries on that table queue behind it); it tries once that transaction ends."""
    engine = before_sequence_numbers
    with session(engine, "nightly-report") as report:
        report.execute(sa.text("SELECT count(*) FROM messages"))  # holds it until rollback
        with app(engine, "SELECT count(*) FROM messages WHERE conversation_id = 1") as reads:
            result = run_alembic(
                "-x", "lock_retry_for=3s", "upgrade", SEQUENCE_NUMBERS, url=engine.url
            )
        report.rollback()

    assert result.returncode != 0
    [line] = failure_lines(result.stdout)
    assert "gave up after 1 lock timeout(s)" in line, line
    assert "application 'nightly-report'" in line
    # App queries queue only behind an attempt that waits for the lock: one attempt (100 ms
    # of lock_timeout), one stall. Counted from the attempts, not from the app's latency,
    # which a busy machine lengthens anyway.
    assert result.stderr.count("retrying in") == 1, result.stderr
    assert reads.longest <= 0.1 + SLACK, f"the app waited {reads.longest:.2f} s"

    with session(engine, "nightly-report") as report:
        report.execute(sa.text("SELECT count(*) FROM messages"))
        result = run_alembic("-x", "lock_attempts=1", "upgrade", SEQUENCE_NUMBERS, url=engine.url)
        report.rollback()
    [line] = failure_lines(result.stdout)
    assert "gave up after 1 lock timeout(s)" in line and "-x lock_attempts" in line, line
    assert "retrying in" not in result.stderr
    with engine.connect() as conn:
        assert current_revision(conn) == BEFORE_IT


@pytest.mark.slow
def test_a_session_queueing_for_the_deploy_lock_does_not_stop_the_migration(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    """The deploy lock is waited for on purpose (a second deploy, a tool that must not run
    during one): such a wait is no app query held up."""
    workspace.add_revision("slow step", "SELECT pg_sleep(1.5)", "SELECT 1")
    args = ("-c", str(workspace.ini), "-x", "app_wait_max=300ms", "upgrade", "head")
    run = popen_alembic(*args, url=head_engine.url)
    with session(head_engine, "waits-for-deploys") as waiter:
        wait_for(lambda: "Running upgrade" in run.stderr.readline(), "the slow step")
        waiter.execute(sa.text("SELECT pg_advisory_lock_shared(:k)"), {"k": MIGRATION_LOCK_KEY})
        waiter.rollback()
    out, err = run.communicate(timeout=120)

    assert run.returncode == 0, out + err
    with head_engine.connect() as conn:
        assert current_revision(conn) == workspace.new_revision_files()[-1].name.split("_")[4]


PAUSE_KEY = 4242


@pytest.mark.slow
def test_a_step_blocked_by_an_idle_session_s_lock_waits_for_it_to_act(
    before_sequence_numbers: sa.Engine,
) -> None:
    """A session-level lock (advisory) is held by a session outside any transaction: the
    step tries again only once that session has done something (here, unlocked)."""
    engine = before_sequence_numbers
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"""
                CREATE FUNCTION test_pause() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_advisory_xact_lock_shared({PAUSE_KEY}); RETURN NEW; END $$;
                CREATE TRIGGER test_pause BEFORE UPDATE ON messages FOR EACH ROW
                EXECUTE FUNCTION test_pause();
            """)
        )
    with session(engine, "holds-a-session-lock") as holder:
        holder.execute(sa.text(f"SELECT pg_advisory_lock({PAUSE_KEY})"))
        holder.commit()
        run = popen_alembic(
            "-x", "lock_retry_for=1min", "upgrade", SEQUENCE_NUMBERS, url=engine.url
        )
        wait_for(lambda: "retrying in" in run.stderr.readline(), "the first lock timeout")
        time.sleep(2)  # the holder stays idle: no second attempt meanwhile
        assert run.poll() is None
        holder.execute(sa.text(f"SELECT pg_advisory_unlock({PAUSE_KEY})"))
        holder.commit()
    out, err = run.communicate(timeout=120)

    assert run.returncode == 0, out + err
    assert err.count("retrying in") == 0, "one lock timeout, then a wait: no second one"
    with engine.connect() as conn:
        assert current_revision(conn) == SEQUENCE_NUMBERS
        assert numbering_problems(conn) == []
