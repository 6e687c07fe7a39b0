"""What the live-migration tests share: data at the revision before sequence numbers, the
numbering rules, alembic as a background process, and sessions that get in its way."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from seed_data.db import REPO_ROOT
from tests.helpers import ALEMBIC_BIN, alembic_env, revision_steps, run_alembic
from tests.time_bounds import assert_within

SEQUENCE_NUMBERS, BEFORE_IT = next(
    (s.revision, s.down_revision)
    for s in revision_steps()
    if s.file_stem.endswith("message_sequence_numbers")
)
CUSTOMER = 1


def seed_conversations(conn: sa.Connection, conversations: int, messages_each: int) -> None:
    """Conversations 1..n, each with messages sent in 2020; every third pair shares an instant,
    and ids are not in sent_at order, so numbering must follow (sent_at, id)."""
    conn.execute(
        sa.text("""
            INSERT INTO customers (id, customer_id, first_name, last_name, email, phone,
                                   date_of_birth, password_hash)
            OVERRIDING SYSTEM VALUE
            VALUES (:id, 'CUST-LIVE01', 'Ada', 'Jones', 'ada@example.co.uk', '07700 900001',
                    '1985-04-12', 'x')
        """),
        {"id": CUSTOMER},
    )
    conn.execute(
        sa.text("""
            INSERT INTO conversations (id, customer_id, channel_code, intent, started_at)
            OVERRIDING SYSTEM VALUE
            SELECT g, :customer, 'web_chat', 'balance_enquiry', '2020-01-01'
            FROM generate_series(1, :n) AS g
        """),
        {"customer": CUSTOMER, "n": conversations},
    )
    conn.execute(
        sa.text("""
            INSERT INTO messages (id, conversation_id, role_code, content, sent_at)
            OVERRIDING SYSTEM VALUE
            SELECT c * 1000 + (:each - m), c, 'customer', 'message ' || m,
                   timestamptz '2020-01-01' + ((m / 2) * 3 + c) * interval '1 minute'
            FROM generate_series(1, :n) AS c, generate_series(1, :each) AS m
        """),
        {"n": conversations, "each": messages_each},
    )
    # The app's own inserts take ids from the identity; keep them clear of ours.
    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('messages', 'id'), 10000000)"))


def at_the_revision_before(engine: sa.Engine, conversations: int, messages_each: int) -> sa.Engine:
    """``engine``'s database at the revision before sequence numbers, seeded as
    :func:`seed_conversations` does: what the previous release runs on."""
    result = run_alembic("upgrade", BEFORE_IT, url=engine.url)
    assert result.returncode == 0, result.stderr
    with engine.begin() as conn:
        seed_conversations(conn, conversations, messages_each)
    return engine


def insert_like_previous_release(conn: sa.Connection, conversation: int) -> None:
    """A message as the release before sequence numbers writes it: no sequence_no."""
    conn.execute(
        sa.text(
            "INSERT INTO messages (conversation_id, role_code, content)"
            " VALUES (:conversation, 'agent', 'previous release')"
        ),
        {"conversation": conversation},
    )


NUMBERING_PROBLEMS = """
WITH expected AS (
    SELECT id, conversation_id, sequence_no,
           row_number() OVER (PARTITION BY conversation_id ORDER BY sequence_no) AS position,
           row_number() OVER (PARTITION BY conversation_id ORDER BY sent_at, id)
               AS display_position,
           content = 'previous release' AS inserted_later
    FROM messages
)
SELECT 'message ' || id || ' has no sequence_no' FROM expected WHERE sequence_no IS NULL
UNION ALL
SELECT 'conversation ' || conversation_id || ' has sequence_no ' || sequence_no
       || ' where ' || position || ' belongs (duplicate or gap)'
FROM expected WHERE sequence_no IS NOT NULL AND sequence_no <> position
UNION ALL
SELECT 'message ' || id || ' (existing before the upgrade) is number ' || sequence_no
       || ', not ' || display_position || ' as (sent_at, id) says'
FROM expected WHERE NOT inserted_later AND sequence_no <> display_position
"""


def numbering_problems(conn: sa.Connection) -> list[str]:
    """Every way the messages break the numbering rule: each message numbered once, 1..n
    per conversation without gaps, rows that existed before in (sent_at, id) order."""
    return list(conn.scalars(sa.text(NUMBERING_PROBLEMS)).all()[:10])


def popen_alembic(*args: str, url: sa.URL) -> subprocess.Popen[str]:
    """``alembic`` in the background, as a deploy runs it."""
    return subprocess.Popen(
        [str(ALEMBIC_BIN), *args],
        cwd=REPO_ROOT,
        env=alembic_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def stop_midway(run: subprocess.Popen[str], how: str, watch: sa.Connection, backend: int) -> None:
    """Stop a running alembic as an operator might, and wait until its session is gone.

    ``SIGKILL``: the process dies and a DBA ends its session (pg_terminate_backend).
    ``SIGINT`` (Ctrl-C): it cancels its statement and exits with one line.
    """
    if how == "SIGINT":
        # How each of its threads treats signals, for a failure message: whether Ctrl-C
        # was ignored (inherited so from a run in the background: tests/conftest.py) or
        # blocked in the thread that waits on the server.
        threads = signal_masks(run.pid)
        run.send_signal(signal.SIGINT)
        try:
            stdout, stderr = run.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            kill(run)
            raise AssertionError(
                f"Ctrl-C did not stop the migration; its threads: {threads}"
            ) from None
        assert run.returncode != 0, "an interrupted migration must not exit 0"
        assert "Traceback" not in stderr, stderr
        assert "interrupted" in stdout and "run the same command again" in stdout, (
            f"{stdout}\n(its threads when Ctrl-C was sent: {threads})"
        )
    else:
        kill(run)
        watch.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    wait_for(
        lambda: (
            not watch.scalar(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": backend}
            )
        ),
        "the stopped migration's session to end",
    )


SIGNAL_MASKS = ("SigBlk", "SigIgn", "SigCgt")  # blocked, ignored, caught


def thread_signals(status: Path) -> dict[str, set[signal.Signals]]:
    """A thread's signal masks, from its ``/proc/.../task/TID/status`` (Linux)."""
    masks = {}
    for line in status.read_text().splitlines():
        name, _, value = line.partition(":")
        if name in SIGNAL_MASKS:
            bits = int(value, 16)
            masks[name] = {s for s in signal.Signals if bits & (1 << (s.value - 1))}
    return masks


def signal_masks(pid: int) -> list[dict[str, set[signal.Signals]]]:
    """Each thread of a process: the signals it blocks, ignores and catches."""
    masks = []
    for status in sorted(Path(f"/proc/{pid}/task").glob("*/status")):
        try:
            masks.append(thread_signals(status))
        except OSError:  # the thread or the process has ended
            continue
    return masks


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def migration_backend(conn: sa.Connection, query_start: str) -> int | None:
    """The pid of a session whose current query starts with ``query_start``, once it waits
    for a lock."""
    return conn.scalar(
        sa.text(
            "SELECT pid FROM pg_stat_activity WHERE query ILIKE :pattern"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ),
        {"pattern": query_start + "%"},
    )


def migration_running(
    conn: sa.Connection, query_start: str, wait_event: str | None = None
) -> int | None:
    """The pid of a session running a query that starts with ``query_start`` (and, if
    given, in ``wait_event``: PgSleep for a trigger's pg_sleep)."""
    return conn.scalar(
        sa.text(
            "SELECT pid FROM pg_stat_activity WHERE query ILIKE :pattern AND state = 'active'"
            " AND (CAST(:event AS text) IS NULL OR wait_event = :event)"
            " AND pid <> pg_backend_pid()"
        ),
        {"pattern": query_start + "%", "event": wait_event},
    )


@contextmanager
def watcher(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection for looking at pg_stat_activity: in autocommit, because inside a
    transaction PostgreSQL shows the same snapshot of it every time."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield conn


@contextmanager
def session(engine: sa.Engine, application: str) -> Iterator[sa.Connection]:
    """A connection that announces itself as ``application`` in pg_stat_activity."""
    with engine.connect() as conn:
        conn.execute(
            sa.text("SELECT set_config('application_name', :name, false)"), {"name": application}
        )
        conn.commit()
        yield conn


def succeeds_after_a_retry(
    engine: sa.Engine, hold: str, *args: str, while_retrying: Callable[[], None] = lambda: None
) -> None:
    """Run alembic while a session holds a lock; release it once alembic has retried."""
    with session(engine, "lock-holder") as holder:
        holder.execute(sa.text(hold))
        started = time.monotonic()
        run = popen_alembic(*args, url=engine.url)
        try:
            wait_for(lambda: "retrying in" in run.stderr.readline(), "a lock-timeout retry")
            # The first attempt's lock_timeout is 100 ms: a retry only after seconds means
            # another timeout was used (one over 15 s would meet the statement timeout).
            assert_within(started, 10, "the first lock-timeout retry")
            while_retrying()
        except BaseException:
            kill(run)
            raise
        holder.rollback()
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
