"""The fixtures command as operators meet it: bad input, a kill, a lost connection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
import sqlalchemy as sa

from seed_data.db import DEMO_DATA_LOCK_KEY, MIGRATION_LOCK_KEY
from seed_data.demo import cli
from seed_data.demo.generate import TABLES
from seed_data.demo.report import render_report
from tests.demo_support import (
    REJECT_EVERY_MESSAGE,
    Loader,
    install,
    other_sessions,
    partial_customers,
    run_script,
    slow_inserts,
    table_counts,
    wait_for_customers,
    wait_for_output,
)
from tests.servers import PgServer
from tests.startup_support import IMPORT_TIMES, Stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--customers", "-5"], "argument --customers: must be between 1 and 10,000,000, got -5"),
        (["--customers", "abc"], "argument --customers: expected a whole number, got 'abc'"),
        (["--customers", "0"], "must be between 1"),
        (["--seed", "x"], "argument --seed: expected a whole number"),
        (["--as-of", "yesterday"], "argument --as-of: expected a date like 2026-11-01"),
        (["--batch-size", "0"], "argument --batch-size"),
        (["--workers", "99"], "argument --workers: must be between 1 and 8"),
        (["-q", "-v"], "not allowed with argument"),
        # int() and date.fromisoformat() accept more than the documented forms.
        (["--customers", "1_000"], "expected a whole number, got '1_000'"),
        (["--customers", "\u0661\u0662"], "expected a whole number"),  # Arabic-Indic 12
        (["--customers", "12.0"], "expected a whole number"),
        (["--customers", " 12"], "expected a whole number"),
        (["--customers", "9" * 5000], "got a 5000-character number"),
        (["--seed", "2147483648"], "argument --seed: must be between 0 and 2,147,483,647"),
        (["--as-of", "20261101"], "expected a date like 2026-11-01, got '20261101'"),
        (["--as-of", "2026-W44-7"], "expected a date like 2026-11-01"),
        (["--as-of", "0099-01-01"], "must be between 1900-01-01 and 9999-12-31"),
        (["--batch-size", "20000"], "argument --batch-size: must be between 1 and 1,000"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    load_fixtures: Loader, args: list[str], complaint: str, capsys
) -> None:
    with pytest.raises(SystemExit) as exited:
        load_fixtures("postgresql://nobody@127.0.0.1:1/never_contacted", *args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert complaint in err
    assert len(err.strip().splitlines()) == 1, err


def test_help_lists_limits_exit_codes_and_verdicts(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        "--customers    1 to 10,000,000",
        "--batch-size   1 to 1,000",
        "1900-01-01 to 9999-12-31",
        "PASSED at 99% or more, WARNING from 95%",
        "2    refused before writing anything",
        "130  interrupted",
        "One load or clear runs at a time",
    ):
        assert needle in text, f"--help must say {needle!r}"


@pytest.mark.parametrize(
    ("path", "complaint"),
    [
        ("missing-dir/report.json", "does not exist"),
        (".", "is a directory"),
        ("a-file/report.json", "does not exist"),
    ],
)
def test_a_report_path_that_cannot_be_written_is_refused_first(
    load_fixtures: Loader, tmp_path, path: str, complaint: str
) -> None:
    (tmp_path / "a-file").write_text("")
    result = load_fixtures(
        "postgresql://nobody@127.0.0.1:1/never_contacted",
        "--report-json",
        str(tmp_path / path),
    )
    assert result.code == 2
    assert complaint in result.err and len(result.err.strip().splitlines()) == 1
    assert "Target database" not in result.out, "checked before the database is contacted"


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        (
            "postgresql://app:s3cret@127.0.0.1:1/bank",
            "cannot connect to postgresql://app:***@127.0.0.1:1/bank",
        ),
        ("mysql://app:s3cret@localhost/bank", "DATABASE_URL uses 'mysql'"),
        ("postgresql://app@localhost:notaport/bank", "DATABASE_URL is not a URL"),
    ],
)
def test_unusable_database_urls_give_one_line_and_exit_2(
    load_fixtures: Loader, url: str, complaint: str
) -> None:
    result = load_fixtures(url, "--customers", "5")
    assert result.code == 2
    assert complaint in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "s3cret" not in result.out + result.err
    assert result.report is None


SLOW_LOAD = ("--customers", "3000", "--batch-size", "20", "--workers", "1")


def test_a_killed_load_rerun_ends_complete_without_duplicates(
    pg_server: PgServer, head_template: str, tmp_path
) -> None:
    with pg_server.database(template=head_template) as engine:
        process = run_script(engine.url, *SLOW_LOAD)
        wait_for_customers(engine, 300, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        with engine.connect() as conn:
            killed_at = table_counts(conn)["customers"]
            assert partial_customers(conn) == [], "a kill must not leave a customer half-loaded"
        assert 300 <= killed_at < 3000, "the kill must land mid-run for this test to mean much"

        report = tmp_path / "rerun.json"
        rerun = run_script(engine.url, *SLOW_LOAD, "--report-json", str(report))
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        document = json.loads(report.read_text())
        assert document["verdict"] == "PASSED"
        assert document["customers_already_present"] >= killed_at
        with engine.connect() as conn:
            counts = table_counts(conn)
            assert partial_customers(conn) == []
        assert counts == {e["entity"]: e["expected"] for e in document["entities"]}
        assert list(counts) == list(TABLES)


def test_a_lost_connection_is_one_clear_error_and_commits_stay(
    pg_server: PgServer, head_template: str
) -> None:
    with pg_server.database(template=head_template) as engine:
        process = run_script(engine.url, *SLOW_LOAD)
        wait_for_customers(engine, 200, process)
        with engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        out, err = process.communicate(timeout=60)
        assert process.returncode == 1, out + err
        assert "the load stopped" in err and "connection" in err
        assert "customer(s) committed in this run stay" in err
        assert len(err.strip().splitlines()) == 1, err
        with engine.connect() as conn:
            assert table_counts(conn)["customers"] >= 200
            assert partial_customers(conn) == []


# --- Ctrl-C: acts at once, a second one never hangs, nothing stays open -----------------


def _interrupt(process, presses: int) -> float:
    """Send Ctrl-C ``presses`` times; seconds until the process exited."""
    started = time.monotonic()
    for _ in range(presses):
        process.send_signal(signal.SIGINT)
        time.sleep(0.01)  # in quick succession
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the command did not exit within 10 s of Ctrl-C")
    return time.monotonic() - started


@pytest.mark.parametrize("presses", [1, 2], ids=["once", "twice"])
def test_ctrl_c_stops_a_load_at_once_and_leaves_no_transaction_open(
    pg_server: PgServer, head_template: str, presses: int
) -> None:
    with pg_server.database(template=head_template) as engine:
        install(engine, slow_inserts(0.05))  # a COPY is always in flight, in a trigger
        process = run_script(engine.url, "--customers", "400", "--batch-size", "20")
        wait_for_customers(engine, 20, process)

        seconds = _interrupt(process, presses)
        err = process.stderr.read()

        assert process.returncode == 130, err
        assert seconds < 2, f"Ctrl-C took {seconds:.1f} s to act"
        assert "Traceback" not in err
        assert "rerun the same command" in err
        assert other_sessions(engine) == [], "every session must end, none in a transaction"
        with engine.connect() as conn:
            assert partial_customers(conn) == []


# Seconds after Python's own start-up (importing site), which is out of the command's
# reach: from the script's first line on (tests/startup_support.py).
@pytest.mark.parametrize("after", [0.0, 0.15, 0.3, 0.6, 1.0])
def test_ctrl_c_at_any_moment_from_start_up_is_never_a_traceback(
    pg_server: PgServer, head_template: str, after: float
) -> None:
    """From the script's first line through imports and argument parsing to the load."""
    with pg_server.database(template=head_template) as engine:
        install(engine, slow_inserts(0.05))  # still loading when the last Ctrl-C comes
        process = run_script(
            engine.url, "--customers", "400", "--batch-size", "20", python=IMPORT_TIMES
        )
        stderr = Stderr(process)
        stderr.wait_for_start_up()
        time.sleep(after)
        seconds = _interrupt(process, 1)
        err = stderr.text()

        assert process.returncode == 130, f"{process.returncode}: {err}"
        assert seconds < 2, f"Ctrl-C took {seconds:.1f} s to act"
        assert "Traceback" not in err, f"Ctrl-C {after} s after start-up: {err}"
        assert other_sessions(engine) == [], "every session must end, none in a transaction"
        with engine.connect() as conn:
            assert partial_customers(conn) == []
            if "nothing was written" in err:
                assert table_counts(conn)["customers"] == 0, err


def test_ctrl_c_after_the_work_is_done_still_exits_130_saying_the_report_stands(
    pg_server: PgServer, head_template: str, load_fixtures: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Ctrl-C handler lives on the main thread; pytest-xdist runs tests there too.
    assert threading.current_thread() is threading.main_thread()

    def render_then_ctrl_c(*args: object, **kwargs: object) -> None:
        render_report(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # nothing left to cancel: the load is done
        time.sleep(0.3)  # the handler runs on the main thread meanwhile

    monkeypatch.setattr(cli, "render_report", render_then_ctrl_c)
    with pg_server.database(template=head_template) as engine:
        result = load_fixtures(engine, "--customers", "5")

        assert result.code == 130, result.err
        assert "interrupted: the load had finished: the report above stands" in result.err
        assert "PASSED" in result.out
        with engine.connect() as conn:
            assert table_counts(conn)["customers"] == 5


def test_ctrl_c_stops_a_load_where_every_customer_fails(
    pg_server: PgServer, head_template: str
) -> None:
    with pg_server.database(template=head_template) as engine:
        install(engine, REJECT_EVERY_MESSAGE)
        install(engine, slow_inserts(0.02))
        process = run_script(engine.url, "--customers", "2000", "-q")
        time.sleep(2.5)  # well into isolating failures
        assert process.poll() is None, "the load ended before it could be interrupted"

        seconds = _interrupt(process, 1)

        assert process.returncode == 130
        assert seconds < 2, f"Ctrl-C took {seconds:.1f} s while failures were isolated"
        assert other_sessions(engine) == []


# --- one run at a time ----------------------------------------------------------------


def _advisory(conn: sa.Connection, function: str, key: int) -> object:
    """Call an advisory-lock function as another session would, and commit."""
    result = conn.scalar(sa.text(f"SELECT {function}(:k)"), {"k": key})
    conn.commit()
    return result


def test_a_second_run_waits_for_the_lock_and_writes_nothing_meanwhile(
    pg_server: PgServer, head_template: str
) -> None:
    with pg_server.database(template=head_template) as engine, engine.connect() as holder:
        _advisory(holder, "pg_advisory_lock", DEMO_DATA_LOCK_KEY)
        holder_pid = holder.scalar(sa.text("SELECT pg_backend_pid()"))
        process = run_script(engine.url, "--customers", "15")
        said = wait_for_output(process, "waiting for it to finish")
        assert "another load or clear of demo data is running" in said
        assert f"running on this database (pid {holder_pid}, connected since " in said, (
            "the waiting line must name the session holding the lock"
        )
        time.sleep(0.5)
        with engine.connect() as conn:
            assert table_counts(conn)["customers"] == 0, "nothing may be written while waiting"

        _advisory(holder, "pg_advisory_unlock", DEMO_DATA_LOCK_KEY)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, out + err
        with engine.connect() as conn:
            assert table_counts(conn)["customers"] == 15


def test_a_load_waits_for_a_migration_and_holds_migrations_off_while_it_runs(
    pg_server: PgServer, head_template: str
) -> None:
    with pg_server.database(template=head_template) as engine, engine.connect() as other:
        _advisory(other, "pg_advisory_lock", MIGRATION_LOCK_KEY)
        install(engine, slow_inserts(0.02))
        process = run_script(engine.url, "--customers", "60", "--batch-size", "10")
        assert "a migration (alembic) is running" in wait_for_output(process, "waiting")
        _advisory(other, "pg_advisory_unlock", MIGRATION_LOCK_KEY)

        wait_for_customers(engine, 10, process)
        # What alembic's env.py does: it cannot take the lock while the load runs.
        got_it = _advisory(other, "pg_try_advisory_lock", MIGRATION_LOCK_KEY)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, out + err
        assert got_it is False, "a migration must not start under a running load"


def test_two_loads_at_once_never_interleave(pg_server: PgServer, head_template: str) -> None:
    with pg_server.database(template=head_template) as engine:
        install(engine, slow_inserts(0.01))  # long enough for the two to overlap
        args = ("--customers", "100", "--batch-size", "10", "--workers", "1")
        first, second = run_script(engine.url, *args), run_script(engine.url, *args)
        results = [(p.communicate(timeout=120), p.returncode) for p in (first, second)]

        for (out, err), code in results:
            assert code == 0, out + err
            assert "skipped" not in out and err == "", out + err
            assert "PASSED" in out
        assert any("were already loaded by an earlier run" in out for (out, _), _ in results)
        with engine.connect() as conn:
            assert table_counts(conn)["customers"] == 100
            assert partial_customers(conn) == []
