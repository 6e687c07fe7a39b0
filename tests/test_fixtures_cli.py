"""The fixtures command as operators meet it: bad input, a kill, a lost connection."""

from __future__ import annotations

import json
import signal
import time

import pytest
import sqlalchemy as sa

from seed_data.demo.generate import TABLES
from tests.fixtures_support import Loader, partial_customers, run_script, table_counts
from tests.servers import PgServer


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


def _wait_for_customers(engine: sa.Engine, at_least: int, process) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with engine.connect() as conn:
            landed = conn.scalar(sa.text("SELECT count(*) FROM customers"))
        if landed >= at_least:
            return landed
        time.sleep(0.02)
    pytest.fail(f"the load ended or stalled before {at_least} customers landed")


SLOW_LOAD = ("--customers", "3000", "--batch-size", "20", "--workers", "1")


def test_a_killed_load_rerun_ends_complete_without_duplicates(
    pg_server: PgServer, head_template: str, tmp_path
) -> None:
    with pg_server.database(template=head_template) as engine:
        process = run_script(engine.url, *SLOW_LOAD)
        _wait_for_customers(engine, 300, process)
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
        _wait_for_customers(engine, 200, process)
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
