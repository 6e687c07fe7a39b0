"""Lock discipline: a blocked migration waits briefly, retries only its failing step, and
gives up with the blocking sessions named and that step unapplied; settings are checked
before anything runs."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util import CommandError

from seed_data.lock_discipline import (
    LockSettings,
    SettingsError,
    format_ms,
    parse_duration,
)
from seed_data.migration_history import HISTORY_REVISION, NOT_RECORDED, ONLINE
from tests.helpers import (
    ALEMBIC_INI,
    config_for,
    current_revision,
    history_rows,
    revision_steps,
    run_alembic,
    snapshot_rows,
)
from tests.live_support import (
    BEFORE_IT,
    SEQUENCE_NUMBERS,
    at_the_revision_before,
    numbering_problems,
    session,
    succeeds_after_a_retry,
)
from tests.time_bounds import assert_within

STEPS = revision_steps()
SECRET = "s3cret-Pa55"
NOWHERE = "postgresql://nobody@127.0.0.1:9/nowhere"


@pytest.fixture
def before_sequence_numbers(engine: sa.Engine) -> sa.Engine:
    """A database at the revision before sequence numbers, with conversations and messages."""
    return at_the_revision_before(engine, conversations=6, messages_each=3)


def failure_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "FAILED" in line or "ERROR" in line]


def schema_objects(conn: sa.Connection) -> dict[str, object]:
    return {
        "column": conn.scalar(
            sa.text(
                "SELECT count(*) FROM information_schema.columns"
                " WHERE table_name = 'messages' AND column_name = 'sequence_no'"
            )
        ),
        "trigger": conn.scalar(sa.text("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal")),
        "function": conn.scalar(
            sa.text("SELECT to_regprocedure('messages_assign_sequence_no()') IS NOT NULL")
        ),
    }


@pytest.mark.slow
def test_blocked_migration_gives_up_naming_the_blocker_then_succeeds_once_it_ends(
    before_sequence_numbers: sa.Engine,
) -> None:
    engine = before_sequence_numbers
    url = engine.url.set(password=SECRET)  # trust auth ignores it; we must never print it
    with engine.connect() as conn:
        rows_before = snapshot_rows(conn)
    with session(engine, "nightly-report") as report:
        blocker = report.scalar(sa.text("SELECT pg_backend_pid()"))
        report.execute(sa.text(f"SELECT count(*), '{SECRET}' FROM messages"))  # holds the table
        started = time.monotonic()
        result = run_alembic("-x", "lock_retry_for=2s", "upgrade", SEQUENCE_NUMBERS, url=url)
        assert_within(started, 12, "giving up after a 2 s lock_retry_for (3 min by default)")
        report.rollback()

    output = result.stdout + result.stderr
    assert result.returncode != 0, "a blocked migration must fail, not wait forever"
    assert "Traceback" not in output
    assert SECRET not in output, "the password (in the blocker's query) was printed"
    [line] = [line for line in failure_lines(result.stderr) if "gave up" in line]
    for expected in (
        f"upgrade {BEFORE_IT} -> {SEQUENCE_NUMBERS}",
        f"blocked by pid {blocker} (user ",
        "application 'nightly-report'",
        "idle in transaction for",
        "query: SELECT count(*), '***' FROM messages)",
        "This step was rolled back and changed nothing",
    ):
        assert expected in line, f"{expected!r} missing from the give-up line:\n{line}"
    with engine.connect() as conn:
        assert current_revision(conn) == BEFORE_IT
        assert schema_objects(conn) == {"column": 0, "trigger": 0, "function": False}
        assert snapshot_rows(conn) == rows_before

    result = run_alembic("upgrade", SEQUENCE_NUMBERS, url=url)
    assert result.returncode == 0, result.stderr
    with engine.connect() as conn:
        assert current_revision(conn) == SEQUENCE_NUMBERS
        assert numbering_problems(conn) == []


@pytest.mark.slow
def test_a_step_that_times_out_is_retried_and_succeeds_when_the_blocker_ends(
    before_sequence_numbers: sa.Engine,
) -> None:
    engine = before_sequence_numbers
    succeeds_after_a_retry(
        engine,
        "SELECT count(*) FROM messages",
        "-x",
        "lock_retry_for=1min",
        "upgrade",
        HISTORY_REVISION,
    )
    with engine.connect() as conn:
        assert current_revision(conn) == HISTORY_REVISION
        assert numbering_problems(conn) == []
        history = history_rows(conn)
    # The retried step is recorded once (by the history revision, later in the same run),
    # started at its first attempt: its duration includes the lock wait and the pause.
    ran = [s.revision for s in STEPS[: [s.revision for s in STEPS].index(HISTORY_REVISION) + 1]]
    earlier = ran[: ran.index(SEQUENCE_NUMBERS)]
    assert [(r["revision"], r["method"]) for r in history] == [
        *((revision, NOT_RECORDED) for revision in earlier),
        *((revision, ONLINE) for revision in ran[len(earlier) :]),
    ]
    (retried,) = [r for r in history if r["revision"] == SEQUENCE_NUMBERS]
    assert retried["duration"] >= dt.timedelta(seconds=0.3), retried


@pytest.mark.slow
def test_a_retry_reruns_only_the_failing_step_of_a_relative_target(engine: sa.Engine) -> None:
    # `downgrade -2` from the sequence numbers: that step commits, then the 2027 catalogue's
    # downgrade waits for a row lock on a product it restores and is retried. Re-resolving
    # "-2" then would go two more steps down.
    command.upgrade(config_for(engine), SEQUENCE_NUMBERS)
    catalogue_2027 = next(step for step in STEPS if step.revision == BEFORE_IT)

    def first_step_is_committed() -> None:
        with engine.connect() as conn:
            assert current_revision(conn) == BEFORE_IT

    succeeds_after_a_retry(
        engine,
        "SELECT 1 FROM products WHERE code = 'easy_access_saver' FOR UPDATE",
        "downgrade",
        "-2",
        while_retrying=first_step_is_committed,
    )
    with engine.connect() as conn:
        assert current_revision(conn) == catalogue_2027.down_revision, (
            "the retry went past its target"
        )


@pytest.mark.parametrize(
    ("args", "environ", "complaint"),
    [
        (["-x", "lock_timeout=500"], {}, "-x lock_timeout='500': expected a number with a unit"),
        (["-x", "lock_timeout=0s"], {}, "must be more than zero"),
        (["-x", "lock_timout=1s"], {}, "unknown -x setting 'lock_timout'"),
        ([], {"MIGRATION_LOCK_RETRY_FOR": "soon"}, "MIGRATION_LOCK_RETRY_FOR='soon'"),
        (["-x", "lock_timeout=2s"], {}, "lock_timeout (2s) is longer than lock_timeout_max"),
        (["-x", "batch_size=0"], {}, "-x batch_size='0': must be more than zero"),
        (["-x", "batch_size=1.5"], {}, "expected a whole number"),
    ],
)
def test_bad_settings_are_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch, args: list[str], environ: dict[str, str], complaint: str
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    # Nothing listens there: a run that connected before checking would say so instead.
    for mode in ([], ["--sql"]):
        result = run_alembic(*args, "upgrade", "head", *mode, url=NOWHERE)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert complaint in result.stdout, result.stdout + result.stderr
        assert len(failure_lines(result.stdout)) == 1


def test_a_refused_run_leaves_the_database_alone(engine: sa.Engine) -> None:
    result = run_alembic("-x", "lock_timeout=0", "upgrade", "head", url=engine.url)
    assert result.returncode != 0
    with engine.connect() as conn:
        assert current_revision(conn) is None, "a refused run must not touch the database"


def test_offline_sql_sets_the_timeouts_before_any_statement() -> None:
    span = f"{BEFORE_IT}:{SEQUENCE_NUMBERS}"
    result = run_alembic("-x", "lock_timeout_max=500ms", "upgrade", span, "--sql", url=None)
    assert result.returncode == 0, result.stderr
    head = result.stdout.split("BEGIN;")[0]
    assert "SET lock_timeout = '500ms';" in head
    assert "SET statement_timeout = '15s';" in head


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("2s", 2000), ("1.5min", 90_000), ("1h", 3_600_000), (" 3 s ", 3000)],
)
def test_durations_need_a_unit(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["500", "2 seconds", "-1s", "1e3ms", ""])
def test_durations_without_a_known_unit_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a number with a unit"):
        parse_duration(text)


def test_durations_render_as_postgresql_reads_them() -> None:
    assert [format_ms(ms) for ms in (800, 15_000, 180_000, 7_200_000, 1500)] == [
        "800ms",
        "15s",
        "3min",
        "2h",
        "1500ms",
    ]


def test_x_arguments_win_over_the_environment() -> None:
    settings = LockSettings.from_sources(
        {"lock_timeout": "50ms"},
        {"MIGRATION_LOCK_TIMEOUT": "300ms", "MIGRATION_STATEMENT_TIMEOUT": "0"},
    )
    assert (settings.lock_timeout, settings.statement_timeout) == (50, 0)


def test_retries_lengthen_lock_waits_up_to_the_cap_and_pauses_up_to_ten_seconds() -> None:
    attempts = LockSettings(lock_timeout=100, lock_timeout_max=800).attempts()
    schedule = [next(attempts) for _ in range(12)]
    assert [a.lock_timeout_ms for a in schedule[:5]] == [100, 200, 400, 800, 800]
    assert all(a.lock_timeout_ms <= 800 for a in schedule)
    assert all(0 < a.pause_after <= 10 for a in schedule)
    assert schedule[-1].pause_after > schedule[0].pause_after


def test_a_caller_may_not_disable_the_lock_timeout() -> None:
    with pytest.raises(SettingsError, match="must be more than zero"):
        LockSettings.from_sources({"lock_timeout_max": "0"}, {})


def test_blocked_caller_transaction_is_not_retried_or_committed(
    before_sequence_numbers: sa.Engine,
) -> None:
    """Inside a caller's transaction a lock timeout is the caller's to handle."""
    engine = before_sequence_numbers
    with session(engine, "holder") as holder, engine.connect() as callers:
        holder.execute(sa.text("SELECT count(*) FROM messages"))
        callers.execute(sa.text("SET lock_timeout = '200ms'"))
        config = Config(str(ALEMBIC_INI))
        config.attributes["connection"] = callers
        started = time.monotonic()
        with pytest.raises(CommandError, match="lock timeout"):
            command.upgrade(config, "head")
        assert_within(started, 15, "the caller's 200 ms lock_timeout")
        assert callers.in_transaction(), "env.py must leave the caller's transaction to them"
        callers.rollback()
        holder.rollback()
    with engine.connect() as conn:
        assert current_revision(conn) == BEFORE_IT
