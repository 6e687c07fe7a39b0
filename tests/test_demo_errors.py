"""The fixtures command against a database that says no: one line, the right exit status,
nothing written, and no password in any output, whichever way it was given."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from seed_data.demo import cli, session
from tests.demo_support import Loader, Result, install, slow_inserts, table_counts
from tests.servers import PgServer
from tests.time_bounds import assert_within

SECRET = "s3cret-Pw"


def url_shapes(engine: sa.Engine, user: str, secret: str = SECRET) -> dict[str, str]:
    """The ways users write a URL with a password, for ``engine``'s database."""
    url = engine.url.set(username=user, password=None)
    plain = url.render_as_string(hide_password=False)
    scheme, rest = plain.split("://", 1)
    at_sign = f"p@ss-{secret}"
    return {
        "userinfo": f"{scheme}://{user}:{secret}@{rest.split('@', 1)[-1]}",
        "query parameter": f"{plain}{'&' if '?' in plain else '?'}password={secret}",
        "raw @ in password": f"{scheme}://{user}:{at_sign}@{rest.split('@', 1)[-1]}",
        "percent-encoded": f"{scheme}://{user}:{quote(at_sign, safe='')}@{rest.split('@', 1)[-1]}",
        "postgres://": f"postgres://{user}:{secret}@{rest.split('@', 1)[-1]}",
    }


def assert_one_line_without_secret(result: Result, code: int, *complaints: str) -> None:
    assert result.code == code, result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.err}"
    for complaint in complaints:
        assert complaint in result.err, result.err
    everything = result.out + result.err + str(result.report)
    assert SECRET not in everything, f"the password leaked:\n{everything}"
    assert "Traceback" not in everything


@contextmanager
def role(engine: sa.Engine, *grants: str, options: str = "") -> Iterator[str]:
    """A login role for this test, with ``grants`` (SQL after GRANT ... TO role)."""
    name = f"loader_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {name} LOGIN {options}"))
        for grant in grants:
            conn.execute(sa.text(f"GRANT {grant} TO {name}"))
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {name}"))
            conn.execute(sa.text(f"DROP ROLE {name}"))


ALL_TABLES = "ALL ON ALL TABLES IN SCHEMA public"
SELECT_ONLY = "SELECT ON ALL TABLES IN SCHEMA public"


def test_a_read_only_database_is_refused_for_load_and_clear(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    load_fixtures(head_engine, "--customers", "4", "-q")
    with head_engine.begin() as conn:
        conn.execute(
            sa.text(
                f'ALTER DATABASE "{head_engine.url.database}" '
                "SET default_transaction_read_only = on"
            )
        )

    for args in (["--customers", "8"], ["--clear"]):
        result = load_fixtures(head_engine, *args)
        assert_one_line_without_secret(result, 2, "is read-only", "writable primary")
    with head_engine.connect() as conn:
        assert table_counts(conn)["customers"] == 4


def test_missing_privileges_are_named_before_anything_is_written(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    load_fixtures(head_engine, "--customers", "3", "-q")
    with role(head_engine, SELECT_ONLY, "INSERT ON ALL TABLES IN SCHEMA public") as name:
        urls = url_shapes(head_engine, name)
        load = load_fixtures(urls["userinfo"], "--customers", "6")
        clear = load_fixtures(urls["query parameter"], "--clear")
    assert_one_line_without_secret(
        load, 2, f"role {name} lacks UPDATE on demo_data_set", "grant it"
    )
    assert_one_line_without_secret(clear, 2, "lacks DELETE on customers, DELETE on accounts")
    with head_engine.connect() as conn:
        assert table_counts(conn)["customers"] == 3


def test_no_select_on_alembic_version_is_one_line(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    with role(head_engine, ALL_TABLES) as name:
        with head_engine.begin() as conn:
            conn.execute(sa.text(f"REVOKE SELECT ON alembic_version FROM {name}"))
        result = load_fixtures(url_shapes(head_engine, name)["raw @ in password"], "-q")
    assert_one_line_without_secret(result, 2, "permission denied for table alembic_version")


def test_a_connection_limit_below_the_workers_is_refused(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    with role(head_engine, ALL_TABLES, options="CONNECTION LIMIT 2") as name:
        result = load_fixtures(
            url_shapes(head_engine, name)["percent-encoded"], "--customers", "5", "--workers", "2"
        )
    assert_one_line_without_secret(
        result, 2, "too many connections", "this run needs 3 connections"
    )
    with head_engine.connect() as conn:
        assert table_counts(conn)["customers"] == 0


def test_an_unknown_url_parameter_is_one_line(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    url = url_shapes(head_engine, "postgres")["query parameter"] + "&sslmodee=require"
    result = load_fixtures(url, "--customers", "5")
    assert_one_line_without_secret(result, 2, 'invalid connection option "sslmodee"')


def test_a_lock_timeout_stops_the_load_with_one_line(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    with head_engine.begin() as conn:
        conn.execute(
            sa.text(f"ALTER DATABASE \"{head_engine.url.database}\" SET lock_timeout = '100ms'")
        )
    with head_engine.connect() as holder:
        holder.execute(sa.text("LOCK TABLE accounts IN SHARE MODE"))
        started = time.monotonic()
        result = load_fixtures(head_engine, "--customers", "30")
        # The database's 100 ms, not the loader's own 60 s (which must not override it).
        assert_within(started, 15, "the load stopped by the database's lock_timeout")
        holder.rollback()
    assert_one_line_without_secret(
        result, 1, "lock timeout", "pg_stat_activity", "customer(s) committed in this run stay"
    )
    assert "skipped" not in result.out, "a lock is not about the customers"


def test_without_a_lock_timeout_of_its_own_the_load_still_stops_waiting(
    head_engine: sa.Engine, load_fixtures: Loader, monkeypatch
) -> None:
    monkeypatch.setattr(session, "LOCK_TIMEOUT", "200ms")  # 60 s in real runs
    with head_engine.connect() as holder:
        holder.execute(sa.text("LOCK TABLE customers IN SHARE MODE"))
        started = time.monotonic()
        result = load_fixtures(head_engine, "--customers", "10")
        assert_within(started, 15, "the load stopped by its own lock_timeout (200 ms here)")
        holder.rollback()
    assert_one_line_without_secret(result, 1, "lock timeout")


def test_a_statement_timeout_stops_the_load_with_one_line(
    head_engine: sa.Engine, load_fixtures: Loader
) -> None:
    install(head_engine, slow_inserts(0.05, "transactions"))
    with head_engine.begin() as conn:
        conn.execute(
            sa.text(
                f"ALTER DATABASE \"{head_engine.url.database}\" SET statement_timeout = '300ms'"
            )
        )
    started = time.monotonic()
    result = load_fixtures(head_engine, "--customers", "30")
    assert_within(started, 15, "the load stopped by the database's 300 ms statement_timeout")
    assert_one_line_without_secret(result, 1, "statement timeout", "statement_timeout")
    assert "skipped" not in result.out


def test_a_statement_timeout_while_counting_is_one_line(
    head_engine: sa.Engine, load_fixtures: Loader, monkeypatch
) -> None:
    def slow_count(cursor, customers: int) -> dict[str, int]:
        cursor.execute("SET statement_timeout = '20ms'")
        cursor.execute("SELECT pg_sleep(1)")
        raise AssertionError("unreachable")

    monkeypatch.setattr(cli, "count_demo_rows", slow_count)
    result = load_fixtures(head_engine, "--customers", "10")
    assert_one_line_without_secret(
        result, 1, "cannot count the demo rows", "statement timeout", "report is missing"
    )
    with head_engine.connect() as conn:
        assert table_counts(conn)["customers"] == 10, "the load itself completed"


# Every refusal that names the database, each met with the password in every shape.
Scenario = Callable[[sa.Engine, Loader], tuple[str, str]]  # -> (user, a phrase of the error)


def _not_migrated(engine: sa.Engine, load: Loader) -> tuple[str, str]:
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
    return "postgres", "run `alembic upgrade head` first"


def _read_only(engine: sa.Engine, load: Loader) -> tuple[str, str]:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f'ALTER DATABASE "{engine.url.database}" SET default_transaction_read_only = on'
            )
        )
    return "postgres", "is read-only"


def _another_data_set(engine: sa.Engine, load: Loader) -> tuple[str, str]:
    load(engine, "--customers", "3", "--seed", "5", "-q")
    return "postgres", "another data set"


def _foreign_row(engine: sa.Engine, load: Loader) -> tuple[str, str]:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customers (id, customer_id, first_name, last_name, email, phone, "
                "date_of_birth, password_hash) VALUES (1000000002, 'X', 'A', 'B', 'x@x', '0', "
                "'1980-01-01', 'x')"
            )
        )
    return "postgres", "the demo id block"


def _unknown_role(engine: sa.Engine, load: Loader) -> tuple[str, str]:
    return "nobody_here", "cannot connect to"


SCENARIOS: dict[str, Scenario] = {
    "not migrated": _not_migrated,
    "read-only": _read_only,
    "another data set": _another_data_set,
    "foreign row": _foreign_row,
    "cannot connect": _unknown_role,
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_refusal_naming_the_database_masks_its_password(
    pg_server: PgServer, head_template: str, load_fixtures: Loader, scenario: str
) -> None:
    with pg_server.database(template=head_template) as engine:
        user, complaint = SCENARIOS[scenario](engine, load_fixtures)
        for shape, url in url_shapes(engine, user).items():
            result = load_fixtures(url, "--customers", "6", "--seed", "42")
            assert_one_line_without_secret(result, 2, complaint, "***")
            assert "p@ss" not in result.out + result.err, f"{shape}: part of the password leaked"
