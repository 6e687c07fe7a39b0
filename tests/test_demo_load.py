"""The fixtures command against real databases: contents, reruns, failures, refusals."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from seed_data.demo import cli, demo_rows, load
from seed_data.demo.generate import (
    DEMO_ID_BASE,
    GENERATOR_VERSION,
    TABLES,
    DemoGenerator,
    customer_code,
    demo_id,
    expected_rows,
    first_account_number,
)
from seed_data.demo.load import BatchLoader
from seed_data.demo.source import load_source_material
from seed_data.models import REFERENCE_TABLES
from tests.demo_support import (
    REJECT,
    REJECT_EVERY_MESSAGE,
    Loader,
    business_rows,
    install,
    partial_customers,
    row_trigger,
    table_counts,
)
from tests.helpers import insert_account, insert_customer, revision_steps, snapshot_rows
from tests.servers import PgServer


def test_same_seed_gives_identical_rows_in_two_databases(
    pg_server: PgServer, head_template: str, load_fixtures: Loader
) -> None:
    contents = []
    for seed in ("7", "7", "8"):
        with pg_server.database(template=head_template) as engine:
            assert load_fixtures(engine, "--customers", "40", "--seed", seed, "-q").code == 0
            with engine.connect() as conn:
                contents.append(business_rows(conn))
    assert contents[0] == contents[1], "the same --seed must give the same rows, ids included"
    assert contents[0] != contents[2], "a different --seed must give different rows"


def test_counts_are_exact_and_the_json_report_matches_the_database(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    result = load_fixtures(head_engine, "--customers", "30", "-q")

    assert result.code == 0, result.err
    with head_engine.connect() as conn:
        counted = table_counts(conn)
    assert counted["customers"] == 30
    assert counted["accounts"] == 15 * 2 + 15 * 3, "odd customers have 2 accounts, even ones 3"
    assert counted["conversations"] == 30
    assert counted["messages"] == 60
    assert 75 * 10 <= counted["transactions"] <= 75 * 20
    report = result.report
    assert report is not None
    assert {e["entity"]: e["actual"] for e in report["entities"]} == counted
    assert {e["entity"]: e["expected"] for e in report["entities"]} == counted
    assert all(e["variance"] == 0 for e in report["entities"])
    assert report["verdict"] == "PASSED"
    assert report["success_rate"] == 1.0
    assert report["rows_written"] == sum(counted.values())
    assert report["skipped_customers"] == []
    assert report["database"].startswith("postgresql://")
    assert "PASSED: every expected row is in the database" in result.out


def test_rerun_adds_nothing_and_a_larger_rerun_adds_only_the_missing(
    pg_server: PgServer, head_template: str, load_fixtures: Loader
) -> None:
    with pg_server.database(template=head_template) as engine:
        load_fixtures(engine, "--customers", "20", "-q")
        with engine.connect() as conn:
            first = business_rows(conn)
        again = load_fixtures(engine, "--customers", "20", "-q")
        with engine.connect() as conn:
            assert business_rows(conn) == first, "a rerun must not add or change anything"
        assert again.code == 0
        assert again.report["rows_written"] == 0
        assert again.report["customers_already_present"] == 20

        assert load_fixtures(engine, "--customers", "35", "-q").code == 0
        with engine.connect() as conn:
            grown = business_rows(conn)
    with pg_server.database(template=head_template) as engine:
        load_fixtures(engine, "--customers", "35", "-q")
        with engine.connect() as conn:
            assert grown == business_rows(conn), "20 then 35 must equal 35 in one go"


def test_clear_removes_demo_rows_only(head_engine: sa.Engine, load_fixtures: Loader) -> None:
    with head_engine.begin() as conn:
        app_customer = insert_customer(conn, "APP-0001")
        insert_account(
            conn, app_customer, "12-34-56 00000001", "everyday_current", "current_account"
        )
    load_fixtures(head_engine, "--customers", "12", "-q")
    with head_engine.connect() as conn:
        reference_before = {t: r for t, r in snapshot_rows(conn).items() if t in REFERENCE_TABLES}

    result = load_fixtures(head_engine, "--clear")

    assert result.code == 0, result.err
    assert "Cleared demo data: 24 messages, 12 conversations" in result.out
    with head_engine.connect() as conn:
        reference_after = {t: r for t, r in snapshot_rows(conn).items() if t in REFERENCE_TABLES}
        counts = table_counts(conn)
        remaining = conn.scalar(sa.text("SELECT customer_id FROM customers"))
    assert reference_after == reference_before, "--clear must never touch reference tables"
    assert counts == {
        "customers": 1,
        "accounts": 1,
        "transactions": 0,
        "conversations": 0,
        "messages": 0,
    }, "only the app's own customer and account may remain"
    assert remaining == "APP-0001"


def test_clear_with_customers_clears_then_loads(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    load_fixtures(head_engine, "--customers", "15", "--seed", "1", "-q")
    result = load_fixtures(head_engine, "--clear", "--customers", "6", "--seed", "2", "-q")
    assert result.code == 0, result.err
    with head_engine.connect() as conn:
        assert table_counts(conn)["customers"] == 6


def test_app_inserts_still_work_after_a_load(head_engine: sa.Engine, load_fixtures: Loader) -> None:
    load_fixtures(head_engine, "--customers", "10", "-q")
    with head_engine.begin() as conn:
        new_id = insert_customer(conn, "APP-0002")
        insert_account(conn, new_id, "12-34-56 00000002", "everyday_current", "current_account")
    assert new_id < DEMO_ID_BASE, "the app's ids come from the sequence, below the demo block"


def _reject_transactions_of(customers: list[int]) -> str:
    """A trigger that fails midway through those customers' rows, after their accounts."""
    accounts = sorted(demo_id(first_account_number(c) + 1) for c in customers)  # 2nd account
    return REJECT + (
        "CREATE TRIGGER reject BEFORE INSERT ON transactions FOR EACH ROW "
        f"WHEN (NEW.account_id IN ({', '.join(map(str, accounts))})) "
        "EXECUTE FUNCTION reject_row();"
    )


def _reject_at_commit(customers: list[int]) -> str:
    """A deferred trigger: its error names no COPY line, so the loader must halve."""
    return REJECT + (
        "CREATE CONSTRAINT TRIGGER reject AFTER INSERT ON customers "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        f"WHEN (NEW.id IN ({', '.join(str(demo_id(c)) for c in customers)})) "
        "EXECUTE FUNCTION reject_row();"
    )


def test_rejected_customers_are_skipped_whole_and_the_rest_land(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    rejected = [3, 17, 18]
    install(head_engine, _reject_transactions_of(rejected))

    result = load_fixtures(head_engine, "--customers", "80", "--batch-size", "25")

    with head_engine.connect() as conn:
        ids = set(conn.scalars(sa.text("SELECT id FROM customers")))
        assert partial_customers(conn) == [], "a customer must land whole or not at all"
        counts = table_counts(conn)
    assert ids == {demo_id(n) for n in range(1, 81) if n not in rejected}
    report = result.report
    assert [s["customer_id"] for s in report["skipped_customers"]] == [
        "DEMO-00000003",
        "DEMO-00000017",
        "DEMO-00000018",
    ]
    assert all("rejected by test trigger" in s["reason"] for s in report["skipped_customers"])
    assert all(len(s["reason"]) <= 200 for s in report["skipped_customers"])
    variance = {e["entity"]: e["variance"] for e in report["entities"]}
    assert variance["customers"] == -3
    assert variance["accounts"] == -(2 + 2 + 3)
    assert variance["messages"] == -6
    assert {e["entity"]: e["actual"] for e in report["entities"]} == counts
    # 3 of 80 customers is about 96% of the rows: WARNING, exit 0 unless --strict.
    assert report["verdict"] == "WARNING"
    assert result.code == 0
    assert "skipped DEMO-00000017: rejected by test trigger" in result.out
    assert "loaded 80/80 customers" in result.out, "plain progress lines when not a terminal"
    assert "expected row(s) are missing" in result.out
    assert "every expected row" not in result.out


def _reject_messages_of(customers: list[int]) -> str:
    """A trigger failing on those customers' messages: the last table, after all else."""
    owners = ", ".join(str(demo_id(c)) for c in customers)
    return (
        "CREATE FUNCTION reject_message() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF (SELECT customer_id FROM conversations WHERE id = NEW.conversation_id) "
        f"IN ({owners}) THEN RAISE EXCEPTION 'rejected by test trigger (messages)'; END IF; "
        "RETURN NEW; END $$; "
        "CREATE TRIGGER reject_message BEFORE INSERT ON messages FOR EACH ROW "
        "EXECUTE FUNCTION reject_message();"
    )


def test_later_refusals_cost_a_savepointed_chunk_and_the_rest_land_as_in_a_clean_load(
    pg_server: PgServer, head_template: str, load_fixtures: Loader, monkeypatch
) -> None:
    """After a table's first refused row, its COPY goes in chunks under savepoints: a
    later refusal there takes back one customer (its earlier rows deleted) and no
    transaction fails again."""
    in_transactions, in_messages = [3, 17, 18, 40, 41, 63], [25, 26, 70]
    rejected = sorted(in_transactions + in_messages)
    failed_transactions: list[object] = []
    real_attempt = BatchLoader._attempt

    def counted(self: BatchLoader, part: list) -> tuple:
        error, refused = real_attempt(self, part)
        if error is not None:
            failed_transactions.append(error)
        return error, refused

    monkeypatch.setattr(BatchLoader, "_attempt", counted)
    with (
        pg_server.database(template=head_template) as clean,
        pg_server.database(template=head_template) as failing,
    ):
        load_fixtures(clean, "--customers", "80", "-q")
        install(
            failing, _reject_transactions_of(in_transactions) + _reject_messages_of(in_messages)
        )
        failed_transactions.clear()

        result = load_fixtures(
            failing, "--customers", "80", "--batch-size", "40", "--workers", "1", "-q"
        )

        assert len(failed_transactions) == 2, (
            f"{len(failed_transactions)} failed transactions: after the first refusal in "
            "transactions and in messages, refusals there must cost a chunk, not a transaction"
        )
        assert [s["customer_id"] for s in result.report["skipped_customers"]] == [
            customer_code(n) for n in rejected
        ]
        with failing.connect() as conn:
            assert partial_customers(conn) == [], "a customer must land whole or not at all"
            landed = business_rows(conn)
            counts = table_counts(conn)
        with clean.connect() as conn:
            everything = business_rows(conn)
        for table, rows in landed.items():
            assert set(rows) <= set(everything[table]), f"{table}: rows a clean load lacks"
        missing = [sum(expected_rows(42, n)[i] for n in rejected) for i in range(len(TABLES))]
        assert counts == {
            table: len(everything[table]) - missing[i] for i, table in enumerate(TABLES)
        }
        assert {e["entity"]: e["actual"] for e in result.report["entities"]} == counts


def test_failures_without_a_copy_line_are_isolated_by_halving(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    install(head_engine, _reject_at_commit([5, 6, 40]))

    result = load_fixtures(head_engine, "--customers", "80", "--batch-size", "16", "-q", "--strict")

    with head_engine.connect() as conn:
        ids = set(conn.scalars(sa.text("SELECT id FROM customers")))
        assert partial_customers(conn) == []
    assert ids == {demo_id(n) for n in range(1, 81) if n not in {5, 6, 40}}
    assert len(result.report["skipped_customers"]) == 3
    assert result.report["verdict"] == "WARNING"
    assert result.code == 1, "--strict makes WARNING fail"


def test_mostly_failing_load_is_failed_with_exit_1(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    install(
        head_engine,
        REJECT + "CREATE TRIGGER reject BEFORE INSERT ON customers FOR EACH ROW "
        "WHEN (NEW.id % 2 = 0) EXECUTE FUNCTION reject_row();",
    )
    result = load_fixtures(head_engine, "--customers", "20", "-q")
    assert result.code == 1
    assert result.report["verdict"] == "FAILED"
    assert "PASSED" not in result.out
    assert "FAILED" in result.out


def test_rerun_with_another_seed_is_refused_and_writes_nothing(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    load_fixtures(head_engine, "--customers", "10", "--seed", "1", "-q")
    with head_engine.connect() as conn:
        before = business_rows(conn)

    result = load_fixtures(head_engine, "--customers", "20", "--seed", "2", "-q")

    assert result.code == 2, "a refusal before any write exits 2"
    assert "another data set: --seed 1 (this run: 2)" in result.err
    assert "add --clear" in result.err
    assert "same command" not in result.err and "rerun" not in result.err.lower(), (
        "rerunning the refused command cannot help: the message must not suggest it"
    )
    assert len(result.err.strip().splitlines()) == 1
    with head_engine.connect() as conn:
        assert business_rows(conn) == before


def test_refuses_a_database_that_is_not_migrated(engine: sa.Engine, load_fixtures: Loader) -> None:
    result = load_fixtures(engine, "--customers", "5")
    assert result.code == 2
    assert "no revision" in result.err and "run `alembic upgrade head` first" in result.err
    assert len(result.err.strip().splitlines()) == 1
    with engine.connect() as conn:
        assert (
            conn.scalar(sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")) == 0
        )


def test_refuses_a_database_behind_head(
    behind_head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    behind = revision_steps()[-1].down_revision
    result = load_fixtures(behind_head_engine, "--customers", "5")
    assert result.code == 2
    assert f"at {behind}" in result.err and "alembic upgrade head" in result.err
    with behind_head_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM customers")) == 0


def test_production_environment_is_refused_unless_overridden(
    head_engine: sa.Engine, load_fixtures: Loader, monkeypatch
) -> None:
    monkeypatch.setenv("APP_ENV", "Production")
    refused = load_fixtures(head_engine, "--customers", "5")
    assert refused.code == 2
    assert "APP_ENV=Production" in refused.err and "--allow-production" in refused.err
    with head_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM customers")) == 0

    allowed = load_fixtures(head_engine, "--customers", "5", "--allow-production", "-q")
    assert allowed.code == 0


def test_missing_reference_codes_are_named_before_anything_is_written(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    with head_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM transaction_categories WHERE code = 'charity'"))
    result = load_fixtures(head_engine, "--customers", "5")
    assert result.code == 2
    assert "transaction_categories has no charity" in result.err
    with head_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM customers")) == 0


def test_target_database_is_printed_with_the_password_masked(
    pg_server: PgServer, head_template: str, load_fixtures: Loader
) -> None:
    with pg_server.database(template=head_template) as engine:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE ROLE fixtures_loader LOGIN PASSWORD 's3cret-pw'"))
            conn.execute(sa.text("GRANT ALL ON ALL TABLES IN SCHEMA public TO fixtures_loader"))
            conn.execute(sa.text("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO fixtures_loader"))
        url = engine.url.set(username="fixtures_loader", password="s3cret-pw")
        try:
            result = load_fixtures(url.render_as_string(False), "--customers", "3")
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text("DROP OWNED BY fixtures_loader"))
                conn.execute(sa.text("DROP ROLE fixtures_loader"))
    assert result.code == 0, result.err
    assert "Target database: postgresql://fixtures_loader:***@" in result.out
    assert "s3cret-pw" not in result.out + result.err + str(result.report)


# --- the data set: recorded before the first write, compared on every rerun ------------


def _data_set(engine: sa.Engine) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT seed, as_of::text, source_sha256, catalogue_sha256, generator_version "
                "FROM demo_data_set"
            )
        ).one_or_none()
    return row._asdict() if row else None


def test_the_data_set_is_recorded_with_the_rows(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    result = load_fixtures(head_engine, "--customers", "5", "--seed", "9", "--as-of", "2026-03-01")

    assert result.code == 0, result.err
    recorded = _data_set(head_engine)
    assert recorded is not None
    assert (recorded["seed"], recorded["as_of"]) == (9, "2026-03-01")
    assert recorded["source_sha256"] == load_source_material().sha256
    assert recorded["generator_version"] == GENERATOR_VERSION
    assert result.report["data_set"]["source_sha256"] == recorded["source_sha256"]


def test_rerun_with_another_as_of_is_refused_and_writes_nothing(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    load_fixtures(head_engine, "--customers", "10", "-q")
    with head_engine.connect() as conn:
        before = business_rows(conn)

    result = load_fixtures(head_engine, "--customers", "20", "--as-of", "2025-06-30", "-q")

    assert result.code == 2
    assert "--as-of 2026-11-01 (this run: 2025-06-30)" in result.err
    assert len(result.err.strip().splitlines()) == 1
    with head_engine.connect() as conn:
        assert business_rows(conn) == before, "dates of two data sets must never mix"


def test_demo_rows_without_a_record_are_refused_until_cleared(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    load_fixtures(head_engine, "--customers", "8", "-q")
    with head_engine.begin() as conn:  # as an older loader, or a hand edit, would leave it
        conn.execute(sa.text("DELETE FROM demo_data_set"))

    refused = load_fixtures(head_engine, "--customers", "8", "-q")
    replaced = load_fixtures(head_engine, "--clear", "--customers", "8", "-q")

    assert refused.code == 2
    assert "no record of the parameters" in refused.err and "add --clear" in refused.err
    assert replaced.code == 0, replaced.err
    assert _data_set(head_engine) is not None


def test_clear_then_load_replaces_another_data_set(
    pg_server: PgServer, head_template: str, load_fixtures: Loader
) -> None:
    with pg_server.database(template=head_template) as engine:
        load_fixtures(engine, "--customers", "12", "--seed", "1", "-q")
        result = load_fixtures(engine, "--clear", "--customers", "12", "--seed", "2", "-q")
        assert result.code == 0, result.err
        assert _data_set(engine)["seed"] == 2
        with engine.connect() as conn:
            replaced = business_rows(conn)
    with pg_server.database(template=head_template) as engine:
        load_fixtures(engine, "--customers", "12", "--seed", "2", "-q")
        with engine.connect() as conn:
            assert business_rows(conn) == replaced, "--clear must leave no row of the old set"


def test_a_rerun_with_every_customer_present_generates_nothing(
    head_engine: sa.Engine, load_fixtures: Loader, monkeypatch
) -> None:
    load_fixtures(head_engine, "--customers", "25", "-q")

    def must_not_generate(self: DemoGenerator, ordinal: int) -> None:
        raise AssertionError(f"customer {ordinal} was regenerated although it is present")

    monkeypatch.setattr(DemoGenerator, "customer", must_not_generate)
    result = load_fixtures(head_engine, "--customers", "25", "-q")

    assert result.code == 0, result.err
    assert result.report["customers_already_present"] == 25
    assert all(e["variance"] == 0 and e["expected"] > 0 for e in result.report["entities"])


# --- clearing: the demo block only, checked first, in committed batches ----------------


def test_clear_spares_app_customers_whose_id_starts_with_demo(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    with head_engine.begin() as conn:
        app_customer = insert_customer(conn, "DEMO-LOOKALIKE")  # the app's, below the block
        insert_account(
            conn, app_customer, "12-34-56 00000009", "everyday_current", "current_account"
        )
    load_fixtures(head_engine, "--customers", "6", "-q")

    result = load_fixtures(head_engine, "--clear")

    assert result.code == 0, result.err
    with head_engine.connect() as conn:
        assert list(conn.scalars(sa.text("SELECT customer_id FROM customers"))) == [
            "DEMO-LOOKALIKE"
        ]
        assert table_counts(conn)["accounts"] == 1
        assert _data_set(conn.engine) is None, "a cleared database records no data set"


def test_clear_commits_in_batches_and_shows_progress(
    head_engine: sa.Engine, load_fixtures: Loader, monkeypatch
) -> None:
    load_fixtures(head_engine, "--customers", "30", "-q")
    monkeypatch.setattr(demo_rows, "CLEAR_BATCH_CUSTOMERS", 7)
    commits = []
    real_clear = demo_rows.clear_demo_data

    def counting(connection, **kwargs):
        def progress(customers: int, rows: int) -> None:
            commits.append(customers)
            kwargs["on_progress"](customers, rows)

        return real_clear(connection, on_progress=progress)

    monkeypatch.setattr(cli, "clear_demo_data", counting)
    result = load_fixtures(head_engine, "--clear")

    assert result.code == 0, result.err
    assert commits == [7, 14, 21, 28, 30], "a commit per batch of customer ids"
    assert "cleared 30/30 demo customers" in result.out
    assert "Cleared demo data: 60 messages, 30 conversations" in result.out
    with head_engine.connect() as conn:
        assert set(table_counts(conn).values()) == {0}


@pytest.mark.parametrize(
    ("setup", "args", "complaint"),
    [
        (
            "UPDATE products SET is_active = false",
            [],
            "products has no product on sale",
        ),
        (
            "ALTER TABLE customers DROP COLUMN phone",
            [],
            "needs column(s) customers.phone, which the database lacks",
        ),
        ("", ["--report-json", "/nonexistent/report.json"], "/nonexistent does not exist"),
        ("", ["--seed", "7", "--as-of", "2026-13-01"], "expected a date like 2026-11-01"),
    ],
    ids=["no-product-on-sale", "dropped-column", "bad-report-path", "bad-as-of"],
)
def test_clear_with_customers_checks_everything_before_clearing(
    head_engine: sa.Engine, load_fixtures: Loader, setup: str, args: list[str], complaint: str
) -> None:
    load_fixtures(head_engine, "--customers", "6", "-q")
    if setup:
        with head_engine.begin() as conn:
            conn.execute(sa.text(setup))
    with head_engine.connect() as conn:
        before = business_rows(conn)

    try:
        result = load_fixtures(head_engine, "--clear", "--customers", "6", *args)
        code, err = result.code, result.err
    except SystemExit as exited:  # argparse refuses before anything runs
        code, err = exited.code, "see captured stderr"
    assert code == 2
    if err != "see captured stderr":
        assert complaint in err and len(err.strip().splitlines()) == 1, err
    with head_engine.connect() as conn:
        assert business_rows(conn) == before, "a refused --clear must not delete anything"


def test_rows_in_the_demo_block_the_loader_did_not_write_are_refused(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    with head_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customers (id, customer_id, first_name, last_name, email, phone, "
                "date_of_birth, password_hash) VALUES (:id, 'APP-IN-BLOCK', 'A', 'B', "
                "'a@example.co.uk', '0', '1980-01-01', 'x')"
            ),
            {"id": demo_id(3)},
        )

    result = load_fixtures(head_engine, "--customers", "5")
    cleared = load_fixtures(head_engine, "--clear", "--customers", "5")

    for refused in (result, cleared):
        assert refused.code == 2
        assert f"customers.id {demo_id(3)} is held by 'APP-IN-BLOCK'" in refused.err
    with head_engine.connect() as conn:
        assert table_counts(conn)["customers"] == 1


# --- failures: counted in the database, isolated at a bounded cost ----------------------


def test_a_trigger_that_silently_drops_rows_shows_as_variance(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    install(
        head_engine,
        row_trigger("drop_some", "transactions", "RETURN NULL;", when="NEW.account_id % 10 = 3"),
    )

    result = load_fixtures(head_engine, "--customers", "40", "-q")

    with head_engine.connect() as conn:
        stored = table_counts(conn)
    entities = {e["entity"]: e for e in result.report["entities"]}
    assert result.report["skipped_customers"] == [], "nothing failed: the rows just vanished"
    assert entities["transactions"]["actual"] == stored["transactions"]
    assert entities["transactions"]["variance"] < 0, (
        "rows a trigger dropped must show as missing: actual is counted in the database, "
        "never taken from what the loader sent"
    )
    assert result.report["rows_written"] > stored["transactions"] + 40 * 4


@pytest.mark.parametrize("customers", [120, 480])
def test_every_customer_failing_late_sends_rows_in_proportion_to_the_load(
    head_engine: sa.Engine, load_fixtures: Loader, monkeypatch, customers: int
) -> None:
    """Rows actually streamed to the server, retries and chunks sent again included."""
    install(head_engine, REJECT_EVERY_MESSAGE)
    lines_sent: list[int] = []
    real_read = load._BlockReader.read

    def counted(self: load._BlockReader, size: int = -1) -> str:
        text = real_read(self, size)
        lines_sent.append(text.count("\n"))
        return text

    monkeypatch.setattr(load._BlockReader, "read", counted)
    result = load_fixtures(
        head_engine, "--customers", str(customers), "--batch-size", "40", "--workers", "1", "-q"
    )

    expected = sum(e["expected"] for e in result.report["entities"])
    assert result.report["customers_skipped"] == customers
    assert result.code == 1 and result.report["verdict"] == "FAILED"
    assert sum(lines_sent) <= 3 * expected, (
        f"{sum(lines_sent):,} rows sent for {expected:,} expected: failure cost must stay "
        "near-linear, not grow with the square of the batch or the chunk"
    )


def test_skip_lines_are_capped_and_the_rest_counted(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    install(head_engine, REJECT_EVERY_MESSAGE)

    result = load_fixtures(head_engine, "--customers", "30")

    skip_lines = [line for line in result.out.splitlines() if line.startswith("skipped ")]
    assert len(skip_lines) == cli.SKIP_LINES_SHOWN
    assert f"{30 - cli.SKIP_LINES_SHOWN} more skipped customer(s) not shown" in result.out
    assert result.report["customers_skipped"] == 30
    assert len(result.report["skipped_customers"]) == 30


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"], ids=["serialization", "deadlock"])
def test_serialization_failures_and_deadlocks_are_retried(
    head_engine: sa.Engine, load_fixtures: Loader, sqlstate: str
) -> None:
    # A sequence is not rolled back: the first two customer rows ever sent fail, once.
    install(
        head_engine,
        "CREATE SEQUENCE flaky;"
        + row_trigger(
            "flaky",
            "customers",
            "IF nextval('flaky') <= 2 THEN RAISE EXCEPTION 'simulated conflict' "
            f"USING ERRCODE = '{sqlstate}'; END IF; RETURN NEW;",
        ),
    )

    result = load_fixtures(head_engine, "--customers", "20", "-q")

    assert result.code == 0, result.err
    assert result.report["verdict"] == "PASSED"
    assert result.report["skipped_customers"] == []


def test_a_conflict_that_never_clears_stops_the_load_with_one_line(
    head_engine: sa.Engine, load_fixtures: Loader, monkeypatch
) -> None:
    monkeypatch.setattr(load, "_RETRY_PAUSE_SECONDS", 0.001)
    install(
        head_engine,
        row_trigger("conflict", "customers", "RAISE EXCEPTION 'conflict' USING ERRCODE = '40001';"),
    )

    result = load_fixtures(head_engine, "--customers", "20")

    assert result.code == 1
    assert "a serialization failure" in result.err and "run the command again" in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "skipped" not in result.out, "a server conflict is not about the customers"
