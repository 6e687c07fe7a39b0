"""The loader's connections: opening them, cancelling them on Ctrl-C, and its locks.

All database work of a run happens on connections registered with one
:class:`Cancellation`. Ctrl-C cancels every statement in flight at once
(``connection.cancel()`` asks the server to stop it), so the threads doing that work see
an error within moments, roll back and end, instead of finishing their batch first.

One load or clear at a time per database: a run holds :data:`DEMO_DATA_LOCK_KEY`, and
:data:`MIGRATION_LOCK_KEY` in shared mode, from before its checks until it ends, so no
second run interleaves with it and ``alembic upgrade`` (which takes the migration key
exclusively) cannot change the schema under it. Both are session locks on the control
connection: they go when it closes, also when the process is killed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy.engine import URL

from seed_data.db import DEMO_DATA_LOCK_KEY, MIGRATION_LOCK_KEY, libpq_params

APPLICATION_NAME = "load_fixtures.py"
# How long a statement may wait for a lock another session holds (a long DDL, an explicit
# LOCK TABLE), unless the database or role sets its own lock_timeout: then it stops with
# one line naming the cause, rather than hanging silently.
LOCK_TIMEOUT = "60s"
_LOCK_POLL_SECONDS = 0.2

Connection = psycopg2.extensions.connection


class Interrupted(Exception):
    """The run was cancelled (Ctrl-C): in-flight work was rolled back."""


class Cancellation:
    """Cancels the statements running on every registered connection, once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[Connection] = []
        self.by_user = False

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def register(self, connection: Connection) -> Connection:
        with self._lock:
            self._connections.append(connection)
        if self.cancelled:  # cancelled while it was connecting
            _cancel(connection)
        return connection

    def cancel(self, *, by_user: bool = False) -> None:
        """Stop the run: every statement in flight is cancelled, threads wind down."""
        with self._lock:
            self.by_user = self.by_user or by_user
            self._event.set()
            connections = list(self._connections)
        for connection in connections:
            _cancel(connection)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when cancelled meanwhile."""
        return self._event.wait(seconds)

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Interrupted


def _cancel(connection: Connection) -> None:
    if not connection.closed:
        with contextlib.suppress(psycopg2.Error):  # the server is gone: nothing to cancel
            connection.cancel()


def connect(url: URL, cancellation: Cancellation, *, autocommit: bool = False) -> Connection:
    """A psycopg2 connection to ``url``, registered for cancellation."""
    params: dict[str, Any] = {"application_name": APPLICATION_NAME, **libpq_params(url)}
    connection = cancellation.register(psycopg2.connect(**params))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, false) "
                "WHERE current_setting('lock_timeout') IN ('0', '')",
                (LOCK_TIMEOUT,),
            )
        connection.autocommit = autocommit
    except psycopg2.Error:
        close(connection)
        raise
    return connection


def roll_back(connection: Connection) -> None:
    """Roll back; quietly when the server already dropped the connection (``closed``
    then tells the caller)."""
    with contextlib.suppress(psycopg2.Error):
        connection.rollback()


def close(connection: Connection) -> None:
    """Close, rolling back anything open first."""
    if not connection.closed:
        roll_back(connection)
        connection.close()


def hold_run_locks(
    connection: Connection, cancellation: Cancellation, announce: Callable[[str], None]
) -> None:
    """Take this run's locks on ``connection`` (autocommit), waiting while others hold them.

    Waiting is announced once per lock, naming who holds it. Ctrl-C ends the wait.
    """
    _wait_for(
        connection,
        "SELECT pg_try_advisory_lock(%s)",
        DEMO_DATA_LOCK_KEY,
        "another load or clear of demo data is running on this database{holder}; waiting "
        "for it to finish (one at a time; Ctrl-C to give up)",
        cancellation,
        announce,
    )
    _wait_for(
        connection,
        "SELECT pg_try_advisory_lock_shared(%s)",
        MIGRATION_LOCK_KEY,
        "a migration (alembic) is running on this database{holder}; waiting for it to "
        "finish (Ctrl-C to give up)",
        cancellation,
        announce,
    )


def _wait_for(
    connection: Connection,
    try_lock: str,
    key: int,
    waiting: str,
    cancellation: Cancellation,
    announce: Callable[[str], None],
) -> None:
    announced = False
    while True:
        with connection.cursor() as cursor:
            cursor.execute(try_lock, (key,))
            (got_it,) = cursor.fetchone()
        if got_it:
            return
        if not announced:
            announced = True
            announce(waiting.format(holder=_holder(connection, key)))
        if cancellation.wait(_LOCK_POLL_SECONDS):
            raise Interrupted


# pg_locks shows a bigint advisory key as two 32-bit halves, objsubid 1.
_HOLDERS = """
SELECT l.pid, coalesce(a.application_name, ''), a.backend_start
FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %s AND l.objid::bigint = %s
ORDER BY a.backend_start LIMIT 1
"""


def _holder(connection: Connection, key: int) -> str:
    """`` (pid 123, load_fixtures.py, since 12:00:01)``, or nothing if that is unknown."""
    with connection.cursor() as cursor:
        cursor.execute(_HOLDERS, (key >> 32, key & 0xFFFFFFFF))
        row = cursor.fetchone()
    if row is None:
        return ""
    pid, application, started = row
    parts = [f"pid {pid}", *([application] if application else [])]
    if started is not None:
        parts.append(f"connected since {started:%H:%M:%S}")
    return f" ({', '.join(parts)})"
