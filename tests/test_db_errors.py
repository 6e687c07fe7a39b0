"""Server-side failures are classified by SQLSTATE into one line that says what to do.

Each case is provoked on a real server, as a user would meet it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg2
import pytest
import sqlalchemy as sa
from alembic.util import CommandError

from seed_data.db import normalise_url, redact, scrub, secrets_in
from seed_data.db_errors import (
    DatabaseFailure,
    classify,
    driver_error,
    first_line,
    is_retryable,
    sqlstate,
)
from tests.servers import PgServer


def failure_of(engine: sa.Engine, *statements: str) -> DatabaseFailure | None:
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as raised:
        for sql in statements:
            conn.exec_driver_sql(sql)
    return classify(raised.value, engine.url)


@pytest.fixture
def table(engine: sa.Engine) -> Iterator[sa.Engine]:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id int PRIMARY KEY, v int CHECK (v > 0))")
    yield engine


def test_constraint_violations_are_about_the_data_not_the_database(table: sa.Engine) -> None:
    assert failure_of(table, "INSERT INTO t VALUES (1, -1)") is None
    assert failure_of(table, "INSERT INTO t VALUES (1, 1), (1, 2)") is None


def test_a_read_only_database_says_to_use_the_primary(table: sa.Engine) -> None:
    with table.begin() as conn:
        conn.exec_driver_sql(
            f'ALTER DATABASE "{table.url.database}" SET default_transaction_read_only = on'
        )
    failure = failure_of(table, "INSERT INTO t VALUES (1, 1)")
    assert failure is not None and failure.cause == "read-only"
    assert "writable primary" in failure.message


def test_a_missing_privilege_says_to_grant_it(table: sa.Engine) -> None:
    with table.begin() as conn:
        conn.exec_driver_sql("DROP ROLE IF EXISTS errors_reader")
        conn.exec_driver_sql("CREATE ROLE errors_reader")
    try:
        failure = failure_of(table, "SET ROLE errors_reader", "INSERT INTO t VALUES (1, 1)")
        assert failure is not None and failure.cause == "permission"
        assert "permission denied for table t" in failure.message
    finally:
        with table.begin() as conn:
            conn.exec_driver_sql("DROP ROLE errors_reader")


def test_timeouts_name_the_setting(table: sa.Engine) -> None:
    with table.connect() as holder:
        holder.exec_driver_sql("LOCK TABLE t")
        failure = failure_of(table, "SET lock_timeout = '50ms'", "SELECT * FROM t")
        holder.rollback()
    assert failure is not None and failure.cause == "lock timeout"
    failure = failure_of(table, "SET statement_timeout = '50ms'", "SELECT pg_sleep(2)")
    assert failure is not None and failure.cause == "statement timeout"
    assert "statement_timeout" in failure.message


def test_a_terminated_session_is_a_connection_problem(engine: sa.Engine) -> None:
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as raised:
        conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        conn.exec_driver_sql("SELECT 1")
    failure = classify(raised.value)
    assert failure is not None and failure.cause in {"terminated", "connection"}


def test_a_deadlock_is_retryable(table: sa.Engine) -> None:
    with table.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1, 1), (2, 1)")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def update(first: int, second: int) -> None:
        with table.connect() as conn:
            try:
                conn.exec_driver_sql(f"UPDATE t SET v = v + 1 WHERE id = {first}")
                barrier.wait(timeout=10)
                conn.exec_driver_sql(f"UPDATE t SET v = v + 1 WHERE id = {second}")
                conn.commit()
            except sa.exc.DBAPIError as error:
                errors.append(error)

    threads = [threading.Thread(target=update, args=pair) for pair in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(errors) == 1, "exactly one side of a deadlock is cancelled"
    assert is_retryable(errors[0])
    failure = classify(errors[0])
    assert failure is not None and failure.retryable


def test_connection_failures_without_a_sqlstate_are_classified(pg_server: PgServer) -> None:
    # A role whose connection limit is 0, as when the workers outnumber the role's limit.
    admin = pg_server.engine(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP ROLE IF EXISTS errors_limited")
        conn.exec_driver_sql("CREATE ROLE errors_limited LOGIN CONNECTION LIMIT 0")
    try:
        limited = pg_server.engine(database="postgres").url.set(username="errors_limited")
        with pytest.raises(sa.exc.OperationalError) as raised:
            sa.create_engine(limited, poolclass=sa.NullPool).connect()
        failure = classify(raised.value)
        assert failure is not None and failure.cause == "too many connections"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql("DROP ROLE errors_limited")
        admin.dispose()


def test_an_unknown_url_parameter_is_named() -> None:
    with pytest.raises(psycopg2.ProgrammingError) as raised:
        psycopg2.connect("dbname=x applicaton_name=typo")
    failure = classify(raised.value)
    assert failure is not None and failure.cause == "bad URL parameter"
    assert "applicaton_name" in failure.message


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://app:s3cr3t-pw@db:5432/bank",
        "postgresql://app@db:5432/bank?password=s3cr3t-pw",
        "postgresql://app@db:5432/bank?sslmode=require&password=s3cr3t-pw",
        "postgresql://app:s3cr3t@pw@db:5432/bank",
        "postgres://app:s3cr3t%40pw@db:5432/bank",
    ],
    ids=["userinfo", "query", "query-second", "raw-at", "percent-encoded"],
)
def test_every_way_of_giving_a_password_is_masked(raw: str) -> None:
    url = normalise_url(raw)
    assert url.host == "db" and url.database == "bank"
    password = url.password
    assert password in {"s3cr3t-pw", "s3cr3t@pw"}
    for shown in (redact(raw), redact(url), scrub(f"echo {password} echo", url)):
        assert "s3cr3t" not in shown and "pw@" not in shown, shown
    assert "password" not in url.query, "the query password moves to the one place secrets live"
    assert secrets_in(url) == [password]


def test_an_sslpassword_is_masked_too() -> None:
    url = normalise_url("postgresql://app@db/bank?sslpassword=keyphrase&sslmode=require")
    assert "keyphrase" not in redact(url)
    assert "sslpassword=***" in redact(url)


def test_the_server_error_behind_a_one_line_alembic_error_is_still_classified(
    table: sa.Engine,
) -> None:
    # env.py raises CommandError(...) from the server's error; callers of command.upgrade()
    # (refdata.py's proof) need the SQLSTATE and diagnostics underneath.
    with table.connect() as conn, pytest.raises(sa.exc.DBAPIError) as raised:
        conn.exec_driver_sql("INSERT INTO t VALUES (1, -1)")
    try:
        raise CommandError("upgrade a -> b: the step failed") from raised.value
    except CommandError as wrapped:
        assert sqlstate(wrapped) == "23514"
        assert driver_error(wrapped).diag.constraint_name == "t_v_check"
        assert first_line(wrapped).startswith('new row for relation "t"')
    assert driver_error(ValueError("not a database error")).args == ("not a database error",)
