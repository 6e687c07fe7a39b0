"""What a database error means for the person running a command: one line, by SQLSTATE.

Every command (alembic's ``env.py``, ``load_fixtures.py``, ``refdata.py``) meets the same
server-side failures: a role without a privilege, a read-only replica, a lock or statement
timeout, a full server, a lost connection. None of them is about the rows being written,
so none should surface as a traceback or as thousands of rejected rows. :func:`classify`
turns each into one line that names the cause and what to do; it returns ``None`` for
errors that *are* about the data (constraint violations, bad values), which the caller
reports with the rows involved.

Deadlocks and serialization failures are marked retryable: the same transaction, run
again, normally succeeds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import URL

from seed_data.db import scrub

DEADLOCK = "40P01"
SERIALIZATION_FAILURE = "40001"
LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"
READ_ONLY_TRANSACTION = "25006"
INSUFFICIENT_PRIVILEGE = "42501"
INVALID_CATALOG = "3D000"  # no such database
OBJECT_IN_USE = "55006"
TOO_MANY_CONNECTIONS = "53300"
RETRYABLE = {DEADLOCK: "a deadlock", SERIALIZATION_FAILURE: "a serialization failure"}


@dataclass(frozen=True)
class DatabaseFailure:
    """A failure that is not about the data: its cause, and one line saying what to do."""

    cause: str  # short and stable, for tests and JSON: "permission", "read-only", ...
    message: str
    retryable: bool = False


def driver_error(error: BaseException) -> BaseException:
    """The psycopg2 error behind ``error`` (or ``error`` itself, when there is none).

    That is a SQLAlchemy wrapper's ``orig``, or the error another one was raised from:
    ``env.py`` turns a server error into alembic's one-line ``CommandError`` with
    ``raise ... from error``, and a caller of ``command.upgrade()`` still needs the
    SQLSTATE and diagnostics underneath.
    """
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, sa.exc.DBAPIError) and current.orig is not None:
            return current.orig
        if isinstance(current, psycopg2.Error):
            return current
        current = current.__cause__
    return error


def server_error(error: BaseException) -> BaseException | None:
    """The database error behind ``error``: itself, the one it was raised from, or the one
    being handled when it was raised. A lost connection inside a transaction SQLAlchemy was
    cleaning up surfaces as ``PendingRollbackError``, with the lost connection behind it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa.exc.DBAPIError | psycopg2.Error):
            return current
        current = current.__cause__ or current.__context__
    return None


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a psycopg2 or SQLAlchemy error, when the server sent one."""
    return getattr(driver_error(error), "pgcode", None) or None


def first_line(error: BaseException, url: URL | None = None) -> str:
    """The error's own message, first line only, with ``url``'s secrets masked."""
    orig = driver_error(error)
    diag = getattr(orig, "diag", None)
    text = getattr(diag, "message_primary", None) or str(orig) or type(orig).__name__
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # libpq's own text for a session the server ended: "FATAL:  terminating connection ...".
    said = _SEVERITY.sub("", lines[0]) if lines else type(orig).__name__
    return scrub(said, url)


_SEVERITY = re.compile(r"^(?:FATAL|PANIC|ERROR):\s+")


SHOWN_KEYS = 10
_IN_USE_KEYS = re.compile(r"(?P<head> reference )(?P<keys>[^;)]*)")


def shorten_in_use(message: str) -> str:
    """The in-use guard's message with each list of keys cut to its first ten: a revision
    deleting 20,000 rows must still fail in one readable line."""

    def shorter(match: re.Match[str]) -> str:
        keys = match["keys"].split(", ")
        if len(keys) <= SHOWN_KEYS:
            return match[0]
        more = len(keys) - SHOWN_KEYS
        return f"{match['head']}{', '.join(keys[:SHOWN_KEYS])} and {more:,} more"

    return _IN_USE_KEYS.sub(shorter, message)


def is_retryable(error: BaseException) -> bool:
    """A deadlock or serialization failure: run the same transaction again."""
    return sqlstate(error) in RETRYABLE


def classify(error: BaseException, url: URL | None = None) -> DatabaseFailure | None:
    """The cause of a failure that is not about the data, or ``None`` when it is."""
    code = sqlstate(error)
    said = first_line(error, url)
    if code is None:
        cause = _connect_failure_cause(error, said)
    elif code in RETRYABLE:
        return DatabaseFailure(
            "retryable", f"{RETRYABLE[code]} ({said}): run the command again", retryable=True
        )
    elif code == QUERY_CANCELED and "statement timeout" not in said:
        cause = "cancelled"
    else:
        cause = next((c for prefix, c in _CAUSE_BY_SQLSTATE if code.startswith(prefix)), None)
    if cause is None:
        return None
    return DatabaseFailure(cause, f"{said}: {ADVICE[cause]}")


ADVICE: dict[str, str] = {
    "permission": "the role lacks a privilege; grant it, or use a role that has it",
    "schema": "the database's schema is not what this checkout expects; run `alembic "
    "upgrade head`, or look for changes made outside the migrations",
    "read-only": "the database is read-only (a standby, or default_transaction_read_only "
    "= on); point DATABASE_URL at the writable primary",
    "lock timeout": "another session holds a lock this needs; find it in pg_stat_activity, "
    "let it finish, then run the command again",
    "statement timeout": "a statement ran longer than statement_timeout; raise it for this "
    "role or database, or run the command again when the server is less busy",
    "cancelled": "someone cancelled the statement; run the command again",
    "terminated": "the server ended the session (shutdown, restart or "
    "pg_terminate_backend); run the command again once it is back",
    "too many connections": "the server or the role has no connection slots left; close "
    "other sessions, raise the limit, or use fewer connections",
    "resources": "the server ran out of a resource (disk, memory); free some and run the "
    "command again",
    "connection": "the connection to the server failed or was lost; check that it is up "
    "and reachable, then run the command again",
    "authentication": "check the user name and password in DATABASE_URL",
    "no database": "create it, or fix the database name in DATABASE_URL",
    "bad URL parameter": "remove or fix that parameter in DATABASE_URL's query string",
    "server": "the server hit an internal or system error; see its log",
}

# Most specific first: the first prefix that matches decides.
_CAUSE_BY_SQLSTATE: tuple[tuple[str, str], ...] = (
    (INSUFFICIENT_PRIVILEGE, "permission"),
    ("42", "schema"),
    (READ_ONLY_TRANSACTION, "read-only"),
    (LOCK_NOT_AVAILABLE, "lock timeout"),
    (QUERY_CANCELED, "statement timeout"),
    ("57P", "terminated"),
    (TOO_MANY_CONNECTIONS, "too many connections"),
    ("53", "resources"),
    ("08", "connection"),
    ("28", "authentication"),
    ("3D000", "no database"),
    ("58", "server"),
    ("XX", "server"),
)

# libpq reports a failure to connect without a SQLSTATE; its wording is stable. Most
# specific first ("too many connections for role" is not about the role's name).
_CONNECT_MESSAGES: tuple[tuple[str, str], ...] = (
    ("too many connections", "too many connections"),
    ("remaining connection slots are reserved", "too many connections"),
    ("password authentication failed", "authentication"),
    ("no password supplied", "authentication"),
    ("permission denied", "permission"),
    ("connect privilege", "permission"),
    ('role "', "authentication"),  # role "x" does not exist
    ('database "', "no database"),  # database "x" does not exist
    ("invalid connection option", "bad URL parameter"),
    ("read-only", "read-only"),  # target_session_attrs=read-write on a standby
)


def _connect_failure_cause(error: BaseException, said: str) -> str | None:
    orig, lowered = driver_error(error), said.lower()
    if isinstance(orig, psycopg2.ProgrammingError) and lowered.startswith("invalid dsn"):
        return "bad URL parameter"
    if not isinstance(orig, psycopg2.OperationalError | psycopg2.InterfaceError):
        return None
    return next((cause for needle, cause in _CONNECT_MESSAGES if needle in lowered), "connection")
