"""App sessions waiting for locks the migration holds: found, measured, and what fixes it.

``lock_timeout`` bounds how long the migration *waits* for a lock; nothing in PostgreSQL
bounds how long it *holds* one. A step that takes ACCESS EXCLUSIVE and then updates a
big table keeps every app query on that table waiting until it commits. So while a step
runs, the watcher in ``seed_data.lock_discipline`` asks, on its own connection, which
sessions wait for a lock the migration's backend has been granted (and that conflicts
with the one they want). Once one of them has waited longer than ``app_wait_max``, the
migration's statement is cancelled: the step rolls back and the app goes on.

Asking costs one cheap query per look while nobody waits for a lock; ``pg_locks`` and
``pg_blocking_pids`` (which take the lock manager's locks) are read only while someone does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import URL

from seed_data.db import MIGRATION_LOCK_KEY, scrub

STATEMENT_SHOWN = 100

# Sessions of this database that wait for a lock (not the migration, not the watcher).
LOCK_WAITERS = sa.text("""
    SELECT pid FROM pg_stat_activity
    WHERE wait_event_type = 'Lock' AND pid NOT IN (:pid, pg_backend_pid())
      AND datname = current_database()
""")
# Of those, who waits for a lockable object the migration holds, and for how long.
HELD_FOR = sa.text("""
    SELECT w.pid,
           coalesce(extract(epoch FROM clock_timestamp() - w.waitstart)::float8, 0.0),
           w.mode,
           h.mode,
           w.locktype,
           coalesce(w.relation, row_of.relation)::regclass::text,
           a.application_name,
           a.query,
           m.query,
           m.xact_start = m.query_start
    FROM pg_locks AS w
    JOIN pg_locks AS h
      ON h.pid = :pid AND h.granted
     AND (h.locktype, h.database, h.relation, h.page, h.tuple, h.virtualxid, h.transactionid,
          h.classid, h.objid, h.objsubid)
         IS NOT DISTINCT FROM
         (w.locktype, w.database, w.relation, w.page, w.tuple, w.virtualxid, w.transactionid,
          w.classid, w.objid, w.objsubid)
    -- A session waiting for a row the migration changed waits for its transaction id; the
    -- row's table is in the tuple lock it holds meanwhile.
    LEFT JOIN LATERAL (
        SELECT t.relation FROM pg_locks AS t
        WHERE t.pid = w.pid AND t.locktype = 'tuple' AND t.relation IS NOT NULL LIMIT 1
    ) AS row_of ON true
    JOIN pg_stat_activity AS a ON a.pid = w.pid
    JOIN pg_stat_activity AS m ON m.pid = :pid
    WHERE NOT w.granted AND w.pid = ANY(CAST(:waiting AS int[]))
      -- The deploy lock is waited for on purpose (a second deploy, a tool that must not
      -- run during one): no app query held up by this step.
      AND NOT (w.locktype = 'advisory' AND w.objsubid = 1
               AND w.classid::bigint = :key_high AND w.objid::bigint = :key_low)
      AND :pid = ANY(pg_blocking_pids(w.pid))
""")

# Table-level lock modes, weakest first, and which modes each one conflicts with
# (PostgreSQL's "Conflicting Lock Modes" table).
MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
_CONFLICTS = {
    "AccessShareLock": {"AccessExclusiveLock"},
    "RowShareLock": {"ExclusiveLock", "AccessExclusiveLock"},
    "RowExclusiveLock": {
        "ShareLock",
        "ShareRowExclusiveLock",
        "ExclusiveLock",
        "AccessExclusiveLock",
    },
    "ShareUpdateExclusiveLock": {
        "ShareUpdateExclusiveLock",
        "ShareLock",
        "ShareRowExclusiveLock",
        "ExclusiveLock",
        "AccessExclusiveLock",
    },
    "ShareLock": {
        "RowExclusiveLock",
        "ShareUpdateExclusiveLock",
        "ShareRowExclusiveLock",
        "ExclusiveLock",
        "AccessExclusiveLock",
    },
    "ShareRowExclusiveLock": set(MODES[2:]),
    "ExclusiveLock": set(MODES[1:]),
    "AccessExclusiveLock": set(MODES),
}


def conflicts(wanted: str, held: str) -> bool:
    """Whether a lock held in mode ``held`` keeps one wanted in mode ``wanted`` waiting.
    Locks other than a table's (a transaction id, a tuple, an object) conflict whenever
    their modes are the table modes' that conflict; the names are the same."""
    return held in _CONFLICTS.get(wanted, set(MODES))


def mode_name(mode: str) -> str:
    """``AccessExclusiveLock`` as the docs write it: ``ACCESS EXCLUSIVE``."""
    words = re.findall(r"[A-Z][a-z]*", mode.removesuffix("Lock"))
    return " ".join(words).upper()


@dataclass(frozen=True)
class Hold:
    """An app session waiting for a lock the migration holds."""

    pid: int
    waited: float  # seconds
    wanted: str
    held: str
    locktype: str
    table: str | None
    application: str | None
    query: str | None
    statement: str | None  # what the migration's backend was running
    own_transaction: bool  # the statement is its own transaction (a batch, autocommit)

    @property
    def on_rows(self) -> bool:
        return self.locktype == "transactionid"

    def what(self) -> str:
        """``ACCESS EXCLUSIVE on transactions``, or ``row locks on messages``."""
        where = self.table or "a table"
        if self.on_rows:
            return f"row locks on {where} (rows this step changed or locked)"
        return f"{mode_name(self.held)} on {where}"

    def describe(self, url: URL | None) -> str:
        app = f"pid {self.pid}, application {self.application or '-'!r}"
        if self.query:
            app += f", query: {shorten(self.query, 60)}"
        return scrub(app, url)


def shorten(text: str, limit: int = STATEMENT_SHOWN) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def holds(connection: sa.Connection, pid: int) -> list[Hold]:
    """App sessions now waiting for a lock ``pid`` holds, the longest wait first."""
    waiting = connection.scalars(LOCK_WAITERS, {"pid": pid}).all()
    if not waiting:
        return []
    key = {"key_high": MIGRATION_LOCK_KEY >> 32, "key_low": MIGRATION_LOCK_KEY & 0xFFFFFFFF}
    rows = connection.execute(HELD_FOR, {"pid": pid, "waiting": list(waiting), **key}).all()
    found: dict[int, Hold] = {}
    for row in rows:
        hold = Hold(*row)
        if not (hold.locktype == "transactionid" or conflicts(hold.wanted, hold.held)):
            continue  # it waits behind our own pending request, which lock_timeout bounds
        kept = found.get(hold.pid)
        if kept is None or MODES.index(_table_mode(hold.held)) > MODES.index(
            _table_mode(kept.held)
        ):
            found[hold.pid] = hold
    return sorted(found.values(), key=lambda hold: hold.waited, reverse=True)


def _table_mode(mode: str) -> str:
    return mode if mode in MODES else MODES[-1]


# What to do, by what the migration was running when the app waited too long.
RECIPES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), recipe)
    for pattern, recipe in (
        (
            r"^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)",
            "build the index with CREATE INDEX CONCURRENTLY, outside the transaction"
            " (op.get_context().autocommit_block())",
        ),
        (
            r"^\s*ALTER\s+TABLE\b.*\b(SET\s+NOT\s+NULL|ADD\s+CONSTRAINT|TYPE)\b",
            "add the constraint NOT VALID, commit, then VALIDATE it (SET NOT NULL after a"
            " valid CHECK needs no scan); change a type through a new column",
        ),
        (
            r"^\s*(WITH\b.*\b)?(UPDATE|DELETE|INSERT|MERGE)\b|^\s*(DO|SELECT)\b",
            "commit after the step that takes the lock, then change the rows in batches, each"
            " its own transaction",
        ),
    )
)
DEFAULT_RECIPE = "hold each lock for a moment only: commit after each locking step"


BATCH_RECIPE = (
    "make its batches smaller, so each holds its locks for a moment (-x batch_size, if the"
    " revision reads it)"
)


def recipe(hold: Hold) -> str:
    """What fixes a revision whose statement kept app queries waiting."""
    if hold.own_transaction:
        said = BATCH_RECIPE  # already outside the step's transaction: one batch took too long
    else:
        text = " ".join((hold.statement or "").split())
        said = next((r for pattern, r in RECIPES if pattern.search(text)), DEFAULT_RECIPE)
    return f"{said} (docs/schema-revisions.md)"
