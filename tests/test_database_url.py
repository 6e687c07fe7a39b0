"""DATABASE_URL handling: one place normalises it, and passwords are never shown."""

from __future__ import annotations

import pytest

from seed_data.db import DatabaseUrlError, libpq_connection, normalise_url, redact
from tests.helpers import run_alembic


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://app:pw@db.internal:5432/bank",
        "postgres://app:pw@db.internal:5432/bank",
        "postgresql+psycopg2://app:pw@db.internal:5432/bank",
    ],
)
def test_postgres_urls_are_pinned_to_psycopg2(raw: str) -> None:
    url = normalise_url(raw)
    assert url.drivername == "postgresql+psycopg2"
    assert (url.host, url.port, url.database, url.password) == ("db.internal", 5432, "bank", "pw")


@pytest.mark.parametrize(
    "raw",
    [
        "mysql://app:pw@db/bank",
        "postgresql+asyncpg://app:pw@db/bank",
        "postgresql://app:pw@db:port/bank",
        "not a url",
    ],
)
def test_other_urls_are_refused_without_echoing_them(raw: str) -> None:
    with pytest.raises(DatabaseUrlError) as raised:
        normalise_url(raw)
    assert "pw" not in str(raised.value)


def test_redact_hides_the_password() -> None:
    shown = "postgresql://app:***@db:5432/bank"
    assert redact("postgresql://app:s3cr3t@db:5432/bank") == shown
    assert redact(normalise_url("postgres://app:s3cr3t@db:5432/bank")) == shown


def test_psql_gets_the_password_in_its_environment_not_its_arguments() -> None:
    target, env = libpq_connection(normalise_url("postgresql://app:s3cr3t@db:5432/bank"))
    assert target == "postgresql://app@db:5432/bank"
    assert env["PGPASSWORD"] == "s3cr3t"


@pytest.mark.slow
def test_unreachable_server_error_names_it_without_the_password() -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    result = run_alembic("upgrade", "head", url="postgresql://app:s3cr3t@127.0.0.1:1/bank")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "s3cr3t" not in output
    assert "Traceback" not in output
    assert "FAILED: cannot connect to postgresql://app:***@127.0.0.1:1/bank" in output


@pytest.mark.slow
def test_wrong_driver_is_a_one_line_error() -> None:
    result = run_alembic("upgrade", "head", url="mysql://app:s3cr3t@db/bank")
    assert result.returncode != 0
    assert "FAILED: DATABASE_URL uses 'mysql'" in result.stdout
    assert "s3cr3t" not in result.stdout + result.stderr
