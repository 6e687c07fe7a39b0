"""The fixtures command's guards at their edges: a refused row blamed on its own customer
when it is that customer's last line, deadlocks retried exactly as often as documented,
``--clear`` refused up front when the role could not finish it, and demo data never mixed
with a data set made from other source material, products or generator."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from seed_data.demo import load
from seed_data.demo.generate import customer_code, demo_id
from tests.demo_support import Loader, business_rows, install, partial_customers, row_trigger
from tests.test_demo_errors import ALL_TABLES, assert_one_line_without_secret, role, url_shapes


def loaded(engine: sa.Engine, load_fixtures: Loader, customers: int) -> dict[str, list[str]]:
    """Load ``customers`` demo customers; the business rows they gave."""
    assert load_fixtures(engine, "--customers", str(customers), "-q").code == 0
    with engine.connect() as conn:
        return business_rows(conn)


def test_a_refused_row_that_is_its_customers_last_line_is_blamed_on_that_customer(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    # A customer has one conversation: its COPY line is both the first and the last of
    # that customer's lines in the table, the boundary where the next customer begins.
    refused = 3
    install(
        head_engine,
        row_trigger(
            "refuse_conversation",
            "conversations",
            "RAISE EXCEPTION 'conversation refused by test trigger';",
            when=f"NEW.customer_id = {demo_id(refused)}",
        ),
    )

    result = load_fixtures(head_engine, "--customers", "6", "-q")

    assert [s["customer_id"] for s in result.report["skipped_customers"]] == [
        customer_code(refused)
    ], "the skipped customer must be the one whose row was refused, not its neighbour"
    with head_engine.connect() as conn:
        present = set(conn.scalars(sa.text("SELECT id FROM customers")))
        assert partial_customers(conn) == []
    assert present == {demo_id(n) for n in range(1, 7) if n != refused}


def _conflicts(sqlstate: str) -> str:
    """The first ``n`` customer rows ever sent fail with ``sqlstate`` (``n`` in a table):
    a sequence is not rolled back with the failed attempt, so each attempt counts."""
    return (
        "CREATE TABLE conflict_budget (n integer); INSERT INTO conflict_budget VALUES (0);"
        "CREATE SEQUENCE conflicts;"
        + row_trigger(
            "conflict",
            "customers",
            "IF nextval('conflicts') <= (SELECT n FROM conflict_budget) THEN "
            f"RAISE EXCEPTION 'simulated conflict' USING ERRCODE = '{sqlstate}'; END IF; "
            "RETURN NEW;",
        )
    )


def _fail_next(engine: sa.Engine, attempts: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE conflict_budget SET n = :n"), {"n": attempts})
        conn.execute(sa.text("ALTER SEQUENCE conflicts RESTART"))


def test_a_deadlock_is_retried_five_times_in_all_then_stops_the_load(
    head_engine: sa.Engine, load_fixtures: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: deadlocks and serialization failures are retried (5 attempts)."""
    monkeypatch.setattr(load, "_RETRY_PAUSE_SECONDS", 0.001)
    install(head_engine, _conflicts("40P01"))

    _fail_next(head_engine, 4)  # the fifth attempt goes through
    result = load_fixtures(head_engine, "--customers", "3", "--workers", "1", "-q")
    assert result.code == 0, result.err
    assert result.report["verdict"] == "PASSED" and result.report["skipped_customers"] == []

    _fail_next(head_engine, 5)  # every attempt fails
    with head_engine.connect() as conn:
        before = business_rows(conn)
    result = load_fixtures(head_engine, "--customers", "6", "--workers", "1", "-q")
    assert_one_line_without_secret(result, 1, "a deadlock", "run the command again")
    with head_engine.connect() as conn:
        assert business_rows(conn) == before


def test_clear_is_refused_before_deleting_anything_when_the_role_cannot_delete_the_record(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    before = loaded(head_engine, load_fixtures, 3)
    with role(head_engine, ALL_TABLES) as name:
        with head_engine.begin() as conn:
            conn.execute(sa.text(f"REVOKE DELETE ON demo_data_set FROM {name}"))
        for args in (["--clear"], ["--clear", "--customers", "5"]):
            result = load_fixtures(url_shapes(head_engine, name)["userinfo"], *args)
            assert_one_line_without_secret(
                result, 2, f"role {name} lacks DELETE on demo_data_set", "grant it"
            )
    with head_engine.connect() as conn:
        assert business_rows(conn) == before, "a refused --clear must delete nothing"


# What a changed checkout records differently (column -> another value), and what the
# refusal says.
OTHER_DATA_SETS = {
    "source material": (
        "source_sha256",
        "'0' || substr(source_sha256, 2)",
        "the source material (seed_data/demo/source_material.yaml) has changed",
    ),
    "products on sale": (
        "catalogue_sha256",
        "'0' || substr(catalogue_sha256, 2)",
        "the products on sale have changed",
    ),
    "generator version": (
        "generator_version",
        "generator_version + 1",
        "generator version ",
    ),
}


def test_demo_data_of_another_source_catalogue_or_generator_is_never_added_to(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    before = loaded(head_engine, load_fixtures, 3)
    with head_engine.connect() as conn:
        recorded = conn.execute(sa.text("SELECT * FROM demo_data_set")).one()._asdict()
    for case, (column, other, said) in OTHER_DATA_SETS.items():
        with head_engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE demo_data_set SET {column} = {other}"))
        result = load_fixtures(head_engine, "--customers", "6", "-q")
        assert result.code == 2, f"{case}: {result.out}{result.err}"
        assert "of another data set" in result.err and said in result.err, (case, result.err)
        assert len(result.err.strip().splitlines()) == 1
        with head_engine.connect() as conn:
            assert business_rows(conn) == before, f"{case}: two data sets were mixed"
        with head_engine.begin() as conn:  # back to this checkout's data set
            conn.execute(
                sa.text(f"UPDATE demo_data_set SET {column} = :v"), {"v": recorded[column]}
            )
    assert load_fixtures(head_engine, "--customers", "6", "-q").code == 0, "the same set adds"
