"""App-like traffic on the tables a revision touches, and a session in the way of one.

Shared by ``bench/live_migration.py`` (the harness, at real sizes) and
``tests/test_live_smoke.py`` (its small run over every revision in CI).

* :func:`touched_tables`: the tables a revision's SQL names (``seed_data.migration_lint``).
* :func:`operations_for`: what the app does on them: the assistant's own reads and the
  previous release's writes where the tables are the app's known ones, and a read by
  primary key of any other table (a later revision's, say).
* :class:`Traffic`: those operations on several connections at a steady rate, each timed;
  the set can change between steps without reconnecting.
* :func:`blocker`: a session holding what a long report or an open admin transaction
  would: ACCESS SHARE on every touched table, and the rows of touched reference tables.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2.extensions
import psycopg2.extras
import sqlalchemy as sa

from seed_data.db_errors import first_line
from seed_data.migration_history import HISTORY_TABLE
from seed_data.migration_lint import tables_named
from seed_data.models import REFERENCE_TABLES

SAMPLE_IDS = 20_000
BOOKKEEPING = {"alembic_version", HISTORY_TABLE}


@dataclass(frozen=True)
class Operation:
    """One thing the app does: statements run in one transaction, on these tables."""

    name: str
    tables: frozenset[str]
    statements: tuple[str, ...]
    weight: int = 1


KNOWN_OPERATIONS = (
    Operation(
        "catalogue",
        frozenset({"products", "faqs"}),
        (
            "SELECT code, name, interest_rate FROM products WHERE is_active ORDER BY code",
            "SELECT slug, question FROM faqs ORDER BY sort_order",
        ),
        2,
    ),
    Operation(
        "conversation",
        frozenset({"messages"}),
        (
            "SELECT role_code, content, sent_at FROM messages"
            " WHERE conversation_id = :conversation ORDER BY sent_at, id",
        ),
        3,
    ),
    Operation(
        "transactions",
        frozenset({"transactions"}),
        (
            "SELECT amount, merchant, occurred_at FROM transactions"
            " WHERE account_id = :account ORDER BY occurred_at DESC LIMIT 10",
        ),
        3,
    ),
    # The previous release's writes: only the columns it knows.
    Operation(
        "write message",
        frozenset({"messages", "conversations"}),
        (
            "INSERT INTO messages (conversation_id, role_code, content)"
            " VALUES (:conversation, 'agent', 'Is there anything else I can help with?')",
        ),
    ),
    Operation(
        "write transaction",
        frozenset({"transactions", "accounts"}),
        (
            "INSERT INTO transactions (account_id, amount, merchant, category_code, occurred_at)"
            " VALUES (:account, -4.50, 'Pret A Manger', 'eating_out', now())",
        ),
    ),
)


def all_tables(conn: sa.Connection) -> list[str]:
    return list(
        conn.scalars(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    )


def touched_tables(sql: str, conn: sa.Connection) -> list[str]:
    """The app's tables a revision's ``--sql`` text names (bookkeeping left out)."""
    return [t for t in tables_named(sql, all_tables(conn)) if t not in BOOKKEEPING]


def operations_for(conn: sa.Connection, touched: Iterable[str]) -> list[Operation]:
    touched = set(touched)
    known = [op for op in KNOWN_OPERATIONS if op.tables & touched]
    covered = set().union(*(op.tables for op in known)) if known else set()
    generic = []
    for table in sorted(touched - covered):
        key = sa.inspect(conn).get_pk_constraint(table)["constrained_columns"]
        order = ", ".join(f'"{column}"' for column in key) or "1"
        generic.append(
            Operation(
                f"read {table}",
                frozenset({table}),
                (f'SELECT * FROM "{table}" ORDER BY {order} LIMIT 5',),
            )
        )
    return known + generic


@dataclass(frozen=True)
class Op:
    started: float
    kind: str
    seconds: float
    error: str | None


class Traffic:
    """App-like operations on several connections at a steady rate, recorded with timings."""

    def __init__(self, engine: sa.Engine, workers: int, interval: float) -> None:
        self.engine, self.interval = engine, interval
        self.stop = threading.Event()
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._operations: list[Operation] = []
        self.sample()
        self.threads = [
            threading.Thread(target=self._run, args=(random.Random(n),), daemon=True)
            for n in range(workers)
        ]

    def sample(self) -> None:
        """Ids the operations pick from (again after rows were added)."""
        with self.engine.connect() as conn:
            present = set(all_tables(conn))
            self.conversations = self._sample(conn, "conversations", present)
            self.accounts = self._sample(conn, "accounts", present)

    @staticmethod
    def _sample(conn: sa.Connection, table: str, present: set[str]) -> list[int]:
        if table not in present:
            return []
        return conn.scalars(
            sa.text(f"SELECT id FROM {table} ORDER BY random() LIMIT {SAMPLE_IDS}")
        ).all()

    def use(self, operations: list[Operation]) -> None:
        """What the app does from now on (nothing, for an empty list)."""
        with self._lock:
            self._operations = [op for op in operations for _ in range(op.weight)]

    def __enter__(self) -> Traffic:
        # An in-process migration (the smoke run's) sets psycopg2's process-wide wait
        # callback and puts the one before back; an app query in flight when it goes from
        # set to unset fails ("wait callback not available"). Set all along, it never is.
        self._callback = psycopg2.extensions.get_wait_callback()
        psycopg2.extensions.set_wait_callback(self._callback or psycopg2.extras.wait_select)
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        psycopg2.extensions.set_wait_callback(self._callback)

    def _run(self, rng: random.Random) -> None:
        next_at = time.monotonic() + rng.uniform(0, self.interval)
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                time.sleep(max(0.0, next_at - time.monotonic()))
                with self._lock:
                    operation = rng.choice(self._operations) if self._operations else None
                # A steady rate: a slow operation delays the next, it does not cause a burst.
                next_at = max(next_at + self.interval, time.monotonic())
                if operation is None:
                    continue
                ids = {"conversation": self.conversations, "account": self.accounts}
                needed = [n for n in ids if any(f":{n}" in sql for sql in operation.statements)]
                if not all(ids[name] for name in needed):
                    continue  # no rows to pick from yet
                params = {name: rng.choice(ids[name]) for name in needed}
                started = time.monotonic()
                error = None
                try:
                    for statement in operation.statements:
                        conn.execute(sa.text(statement), params)
                    conn.commit()
                except sa.exc.DBAPIError as failure:
                    error = first_line(failure)
                    conn.rollback()
                elapsed = time.monotonic() - started
                with self._lock:
                    self.ops.append(Op(started, operation.name, elapsed, error))

    def between(self, start: float, end: float) -> list[Op]:
        with self._lock:
            return [op for op in self.ops if start <= op.started < end]


@dataclass(frozen=True)
class Latency:
    count: int
    errors: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, ops: list[Op]) -> Latency:
        ms = sorted(op.seconds * 1000 for op in ops) or [0.0]
        return cls(
            len(ops),
            sum(op.error is not None for op in ops),
            statistics.median(ms),
            ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))],
            ms[-1],
        )


@contextmanager
def blocker(engine: sa.Engine, tables: Iterable[str]) -> Iterator[int]:
    """A session in the way of a revision touching ``tables``, until the block ends: a
    report reading each of them (ACCESS SHARE), which also holds the rows of the touched
    reference tables (FOR NO KEY UPDATE: an admin editing them, app inserts that point at
    them unhindered). Yields its pid."""
    with engine.connect() as conn:
        conn.execute(sa.text("SET application_name = 'nightly-report'"))
        pid = conn.scalar(sa.text("SELECT pg_backend_pid()"))
        for table in sorted(tables):
            conn.execute(sa.text(f'LOCK TABLE "{table}" IN ACCESS SHARE MODE'))
            if table in REFERENCE_TABLES:
                conn.execute(sa.text(f'SELECT 1 FROM "{table}" FOR NO KEY UPDATE'))
        yield pid
        conn.rollback()
