"""Lock discipline for migrations on a live database: timeouts, retries, and who is in the way.

A migration that waits for a lock makes every app query on that table queue behind it. So
``alembic/env.py`` runs each step (one revision, in its own transaction) with a short
``lock_timeout``; a step that times out (SQLSTATE 55P03) or deadlocks is rolled back and
retried with a longer timeout after a growing pause, within a total budget, the way
GitLab's ``with_lock_retries`` does. While a step runs, a second connection watches the
migration's backend: once a lock wait has timed out it is too late to ask
``pg_blocking_pids``, so the sessions in the way are recorded while they still are, and
the give-up line names them.

Settings come from ``-x name=value`` (``alembic -x lock_retry_for=10min upgrade head``)
or the environment (``MIGRATION_LOCK_RETRY_FOR=10min``); ``-x`` wins.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from seed_data.db import scrub
from seed_data.db_errors import DEADLOCK, LOCK_NOT_AVAILABLE, first_line, sqlstate
from seed_data.lock_holds import Hold, holds, recipe, shorten

log = logging.getLogger("alembic.env")

# Waits that end in these are retried: the same step, run again, normally succeeds.
RETRIED_SQLSTATES = {LOCK_NOT_AVAILABLE: "lock timeout", DEADLOCK: "deadlock"}
# How often the watcher looks at the migration's backend, and how long a wait must last
# before it is logged (so an operator sees what a long CONCURRENTLY build waits for).
WATCH_INTERVAL = 0.05
# How long the watcher waits before saying it lost its connection (see BlockerWatch._lost).
QUIET_FOR = 1.0
# How often a retry looks whether the sessions that blocked the last attempt have gone.
BLOCKER_POLL = 0.1
STILL_OPEN = sa.text("""
    SELECT count(*) FROM pg_stat_activity AS a
    JOIN unnest(CAST(:pids AS int[]), CAST(:since AS timestamptz[])) AS b (pid, since)
      ON a.pid = b.pid AND coalesce(a.xact_start, a.state_change) = b.since
""")
# A cancel that has not freed the app by then was ignored: the session is ended instead.
TERMINATE_AFTER = 0.25
CANCEL = sa.text("SELECT pg_cancel_backend(:pid)")
TERMINATE = sa.text("SELECT pg_terminate_backend(:pid)")
LOG_WAITS_AFTER = 10.0
QUERY_SHOWN = 80
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}


class SettingsError(ValueError):
    """A timeout or batch setting that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Option:
    """A setting's -x name and environment variable; the defaults are LockSettings'."""

    name: str
    env: str
    is_duration: bool = True
    zero_allowed: bool = False


OPTIONS: tuple[Option, ...] = (
    Option("lock_timeout", "MIGRATION_LOCK_TIMEOUT"),
    Option("lock_timeout_max", "MIGRATION_LOCK_TIMEOUT_MAX"),
    Option("lock_retry_for", "MIGRATION_LOCK_RETRY_FOR"),
    Option("lock_attempts", "MIGRATION_LOCK_ATTEMPTS", is_duration=False),
    Option("app_wait_max", "MIGRATION_APP_WAIT_MAX"),
    Option("statement_timeout", "MIGRATION_STATEMENT_TIMEOUT", zero_allowed=True),
    Option("batch_size", "MIGRATION_BATCH_SIZE", is_duration=False),
)


def parse_duration(text: str) -> int:
    """``"500ms"``, ``"2s"``, ``"1.5min"``, ``"1h"`` in milliseconds; a unit is required
    (a bare ``500`` would mean milliseconds to PostgreSQL and seconds to most people)."""
    if text.strip() == "0":
        return 0
    match = _DURATION.match(text)
    if not match:
        raise ValueError("expected a number with a unit: 500ms, 2s, 5min or 1h")
    return math.ceil(float(match[1]) * _UNIT_MS[match[2]])


def format_ms(ms: int) -> str:
    """Milliseconds as PostgreSQL takes them in ``SET``: ``800ms``, ``15s``, ``3min``."""
    for unit, size in (("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def human_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


@dataclass(frozen=True)
class Attempt:
    number: int
    lock_timeout_ms: int
    pause_after: float  # seconds to wait before the next attempt, if this one times out


@dataclass(frozen=True)
class LockSettings:
    """Durations in milliseconds; README, "Deploying to a live database", explains each."""

    lock_timeout: int = 100  # the first attempt's lock wait; doubles on each retry
    lock_timeout_max: int = 800  # the longest: how long app queries may queue behind us
    lock_retry_for: int = 180_000  # how long one step keeps retrying
    # Each attempt that times out may stall app queries once (they queue behind it), so a
    # blocked step makes at most this many attempts: at most this many stalls.
    lock_attempts: int = 10
    # The longest an app query may wait for a lock the migration holds, before the
    # migration's statement is cancelled and its step rolled back.
    app_wait_max: int = 1000
    statement_timeout: int = 15_000  # 0: none; CONCURRENTLY builds and VALIDATE are exempt
    batch_size: int = 1000  # what a batched data migration handles per transaction

    @classmethod
    def from_sources(
        cls, x_arguments: Mapping[str, str], environ: Mapping[str, str] | None = None
    ) -> LockSettings:
        """Settings from ``-x`` arguments, then the environment, then the defaults."""
        environ = os.environ if environ is None else environ
        known = {option.name: option for option in OPTIONS}
        unknown = sorted(set(x_arguments) - set(known))
        if unknown:
            raise SettingsError(
                f"unknown -x setting {unknown[0]!r}; known: {', '.join(known)} (see README,"
                " 'Deploying to a live database')"
            )
        values = {}
        for option in OPTIONS:
            if option.name in x_arguments:
                raw, where = x_arguments[option.name], f"-x {option.name}"
            elif environ.get(option.env, "").strip():
                raw, where = environ[option.env], option.env
            else:
                continue
            values[option.name] = _parse_option(option, raw, where)
        settings = cls(**values)
        if settings.lock_timeout > settings.lock_timeout_max:
            raise SettingsError(
                f"lock_timeout ({format_ms(settings.lock_timeout)}) is longer than"
                f" lock_timeout_max ({format_ms(settings.lock_timeout_max)}); raise"
                " lock_timeout_max or lower lock_timeout"
            )
        return settings

    def attempts(self) -> Iterator[Attempt]:
        """The retry schedule: lock timeouts double up to the cap, pauses grow to 10 s.

        Pauses are jittered so two deploys retrying against one blocker do not collide.
        """
        number, lock_timeout, pause = 1, self.lock_timeout, 0.5
        while True:
            yield Attempt(number, lock_timeout, pause * random.uniform(0.5, 1.0))
            number += 1
            lock_timeout = min(lock_timeout * 2, self.lock_timeout_max)
            pause = min(pause * 1.5, 10.0)

    def session_settings(self, lock_timeout_ms: int) -> dict[str, str]:
        return {
            "lock_timeout": format_ms(lock_timeout_ms),
            "statement_timeout": format_ms(self.statement_timeout),
        }

    def revision_options(self, *, autocommit_allowed: bool) -> dict[str, Any]:
        """What revisions may read from ``op.get_context().opts``.

        ``autocommit_allowed`` is False inside a caller's transaction: no COMMIT, no
        CONCURRENTLY there. ``long_lock_timeout`` is for statements no app query queues
        behind (CONCURRENTLY builds, VALIDATE): they may wait as long as a step retries.
        """
        return {
            "autocommit_allowed": autocommit_allowed,
            "batch_size": self.batch_size,
            "long_lock_timeout": format_ms(self.lock_retry_for),
            **self.session_settings(self.lock_timeout_max),
        }


def _parse_option(option: Option, raw: str, where: str) -> int:
    text = raw.strip()
    try:
        value = parse_duration(text) if option.is_duration else int(text)
    except ValueError as error:
        reason = error if option.is_duration else "expected a whole number"
        raise SettingsError(f"{where}={raw!r}: {reason}") from None
    if value < 0 or (value == 0 and not option.zero_allowed):
        forever = " (0 would wait for locks forever)" if option.name.startswith("lock") else ""
        raise SettingsError(f"{where}={raw!r}: must be more than zero{forever}")
    if not option.is_duration and value > 1_000_000:
        raise SettingsError(f"{where}={raw!r}: at most 1,000,000")
    return value


@dataclass(frozen=True)
class Blocker:
    """A session the migration's backend was waiting for, as pg_stat_activity showed it."""

    pid: int
    user: str | None
    application: str | None
    state: str | None
    state_seconds: float | None
    transaction_seconds: float | None
    query: str | None
    # With the pid, what it is doing: its transaction, or (idle, holding a session-level
    # lock) its last change of state. A retry waits for that to end.
    since: dt.datetime | None = None

    def describe(self, url: URL | None) -> str:
        parts = [f"user {self.user or '?'}", f"application {self.application or '-'!r}"]
        if self.state:
            state = self.state
            if self.state_seconds is not None:
                state += f" for {human_seconds(self.state_seconds)}"
            if self.transaction_seconds is not None:
                state += f", transaction open {human_seconds(self.transaction_seconds)}"
            parts.append(state)
        if self.query and self.query.startswith("autovacuum:"):
            # It yields only to lock waits longer than deadlock_timeout, which ours are not.
            parts.append("autovacuum: it ends on its own, or SELECT pg_cancel_backend(pid)")
        if self.query:
            query = " ".join(self.query.split())
            if len(query) > QUERY_SHOWN:
                query = query[: QUERY_SHOWN - 3] + "..."
            parts.append(f"query: {query}")
        return scrub(f"pid {self.pid} ({', '.join(parts)})", url)


WATCH_QUERY = sa.text("""
    SELECT a.pid, a.usename, a.application_name, a.state,
           extract(epoch FROM now() - a.state_change)::float8,
           extract(epoch FROM now() - a.xact_start)::float8,
           a.query,
           coalesce(a.xact_start, a.state_change)
    FROM (SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid) AS migration
    CROSS JOIN LATERAL unnest(
        -- pg_blocking_pids takes the lock manager's locks: ask only while we wait on one.
        CASE WHEN migration.wait_event_type = 'Lock' THEN pg_blocking_pids(:pid) END
    ) AS blocking(pid)
    JOIN pg_stat_activity AS a ON a.pid = blocking.pid
    ORDER BY a.pid
""")


class BlockerWatch:
    """A thread on a second connection that records who blocks the migration's backend,
    and stops the migration's statement once an app session has waited ``app_wait_max``
    seconds for a lock the migration holds (``seed_data.lock_holds``)."""

    def __init__(
        self, engine: sa.Engine, pid: int, url: URL | None, app_wait_max: float | None = None
    ) -> None:
        self._engine, self._pid, self._url = engine, pid, url
        self.app_wait_max = app_wait_max
        # The wait that made the watcher cancel the migration's statement.
        self.hold: Hold | None = None
        # The cancel did not free the app (the step held the lock between statements), so
        # the watcher ended the migration's session.
        self.session_ended = False
        self._cancelled_at = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Held while the watch's own query runs; see paused().
        self._querying = threading.Lock()
        # pid -> (latest view, times seen) during the current attempt.
        self._seen: dict[int, tuple[Blocker, int]] = {}
        self._waiting_since: float | None = None
        self._last_logged = 0.0
        self.unavailable: str | None = None
        self._thread = threading.Thread(target=self._run, name="blocker-watch", daemon=True)

    def __enter__(self) -> BlockerWatch:
        # Ctrl-C and SIGTERM are the main thread's to take. The kernel may hand a signal sent
        # to the process to any thread that does not block it; taken by the watch, it would
        # not wake the main thread from its wait on the server, and the statement would run
        # on. The thread inherits the mask it is started with: blocked from its first moment.
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No query of the watch runs meanwhile. A data-file revision's COPY lifts psycopg2's
        wait callback, which is process-wide: a query of this thread in flight at that moment
        would fail ("wait callback not available") and end the watch for the rest of the run.
        env.py hands this to revisions as the ``watch_paused`` option."""
        with self._querying:
            yield

    def forget(self) -> None:
        """Start a new attempt: what blocked the last one no longer counts."""
        with self._lock:
            self._seen = {}

    def blockers(self) -> list[Blocker]:
        """Who blocked this attempt. An app query that happened to be running when one look
        was taken is seen once; a session that holds the lock throughout is seen again."""
        with self._lock:
            seen = sorted(self._seen.values(), key=lambda entry: entry[0].pid)
        lasting = [blocker for blocker, times in seen if times > 1]
        return lasting or [blocker for blocker, _ in seen]

    def _run(self) -> None:
        try:
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except sa.exc.DBAPIError as error:
            # A role at its connection limit, say: the migration still runs, unnamed blockers.
            self._lost("cannot watch for blocking sessions", error)
            return
        with connection:
            while not self._stop.wait(WATCH_INTERVAL):
                try:
                    with self._querying:
                        rows = connection.execute(WATCH_QUERY, {"pid": self._pid}).all()
                        if self.app_wait_max is not None:
                            self._bound_holds(connection)
                except sa.exc.DBAPIError as error:
                    self._lost("stopped watching for blocking sessions", error)
                    return
                self._record([Blocker(*row) for row in rows])

    def _lost(self, what: str, error: sa.exc.DBAPIError) -> None:
        """Say that the watch has stopped, unless the run ends first: a server restart ends
        the migration's session too, and its own line says what happened."""
        self.unavailable = first_line(error, self._url)
        if not self._stop.wait(QUIET_FOR):
            log.warning(
                "%s (lock holds are not bounded for the rest of this run): %s",
                what,
                self.unavailable,
            )

    def _bound_holds(self, connection: sa.Connection) -> None:
        """Cancel the migration's statement once an app session has waited too long for a
        lock it holds; end its session if that does not free the app (a backend between two
        statements of an open transaction ignores a cancel)."""
        found = holds(connection, self._pid)
        if self.hold is None:
            if found and self.app_wait_max is not None and found[0].waited >= self.app_wait_max:
                self.hold, self._cancelled_at = found[0], time.monotonic()
                connection.execute(CANCEL, {"pid": self._pid})
        elif found and time.monotonic() - self._cancelled_at >= TERMINATE_AFTER:
            connection.execute(TERMINATE, {"pid": self._pid})
            self.session_ended = True
            self.app_wait_max = None  # done: the run stops with the hold's line

    def _record(self, blockers: list[Blocker]) -> None:
        now = time.monotonic()
        if not blockers:
            self._waiting_since = None
            return
        with self._lock:
            for blocker in blockers:
                self._seen[blocker.pid] = (blocker, self._seen.get(blocker.pid, (None, 0))[1] + 1)
        if self._waiting_since is None:
            self._waiting_since = now
        waited = now - self._waiting_since
        if waited >= LOG_WAITS_AFTER and now - self._last_logged >= LOG_WAITS_AFTER:
            self._last_logged = now
            log.info(
                "waiting %s for a lock held by %s",
                human_seconds(waited),
                "; ".join(b.describe(self._url) for b in blockers),
            )


@dataclass
class StepProgress:
    """Where a run is: the steps resolved once, how many are done, the current attempt."""

    steps: list[Any] | None = None
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    commits: int = 0

    @property
    def current(self) -> Any | None:
        if self.steps is None or self.done >= len(self.steps):
            return None
        return self.steps[self.done]

    def outcome(self) -> str:
        """What a failure of the current step left behind, for the one line that reports it."""
        if self.commits:
            said = "Anything this revision committed before it stays, and the next run resumes it"
        else:
            said = "This step was rolled back and changed nothing"
        if self.done:
            said += f" (the {self.done} step(s) before it stay applied)"
        return said


class GaveUp(Exception):
    """A step could not get its locks within the retry budget."""


class HeldTooLong(GaveUp):
    """An app session waited longer than ``app_wait_max`` for a lock the step held: its
    statement was cancelled and the step rolled back."""


def describe_step(step: Any) -> str:
    if step is None:
        return "the migration"
    return str(getattr(step, "short_log", step))  # "upgrade 96913cafe93c -> e76ed0cf054b"


class LockRetry:
    """Runs alembic's steps with per-attempt timeouts and retries only the failing step.

    ``plan`` replaces the command's migration function: it resolves the steps once (so a
    relative target such as ``downgrade -2`` is not re-resolved after a partial run) and,
    on a retry, hands alembic only the steps not yet committed.
    """

    def __init__(
        self,
        connection: sa.Connection,
        settings: LockSettings,
        url: URL | None,
        watch: BlockerWatch | None,
    ) -> None:
        self._connection, self._settings, self._url, self._watch = (
            connection,
            settings,
            url,
            watch,
        )
        self.progress = StepProgress()
        self._attempt: Attempt | None = None

    def plan(self, resolve: Callable[[Any, Any], Iterable[Any]]) -> Callable[..., Iterator[Any]]:
        def steps(heads: Any, migration_context: Any) -> Iterator[Any]:
            progress = self.progress
            if progress.steps is None:
                progress.steps = list(resolve(heads, migration_context))
            while progress.current is not None:
                self._before_attempt(migration_context)
                yield progress.current
                # Alembic asks for the next step only after committing this one.
                progress.done += 1
                progress.started = time.monotonic()
                progress.commits = 0
                self._attempt = None

        return steps

    def _before_attempt(self, migration_context: Any) -> None:
        if self._attempt is None:
            self._schedule = self._settings.attempts()
            self._attempt = next(self._schedule)
        values = self._settings.session_settings(self._attempt.lock_timeout_ms)
        # Session-level, so it holds across a revision's autocommit blocks; rolled back
        # with the step when it fails, and set again for the next attempt. One round trip:
        # a step's overhead is paid once per revision on every run.
        self._connection.exec_driver_sql(
            "; ".join(f"SET {name} = '{value}'" for name, value in values.items())
        )
        # Revisions that lift the timeouts for a CONCURRENTLY build restore these values.
        migration_context.opts.update(values)
        if self._watch is not None:
            self._watch.forget()

    def on_commit(self, _connection: Any) -> None:
        self.progress.commits += 1

    def run(self, run_steps: Callable[[], None]) -> None:
        while True:
            try:
                run_steps()
                return
            except Exception as error:
                if self._watch is not None and self._watch.hold is not None:
                    # Whatever the cancel (or the ended session) made of the step's work.
                    raise HeldTooLong(self.held_too_long_message(self._watch.hold)) from None
                cause = RETRIED_SQLSTATES.get(sqlstate(error) or "")
                attempt = self._attempt
                if not isinstance(error, sa.exc.DBAPIError) or cause is None or attempt is None:
                    raise
                self._retry_or_give_up(cause, attempt)

    def _retry_or_give_up(self, cause: str, attempt: Attempt) -> None:
        """Every attempt that timed out may have made app queries queue behind it once, so
        attempts are few (``lock_attempts``), and the next one starts only once the sessions
        that blocked this one have ended their transactions: against the same blocker, a
        retry would only stall the app again."""
        progress = self.progress
        elapsed = time.monotonic() - progress.started
        upcoming = next(self._schedule)
        budget = self._settings.lock_retry_for / 1000
        last_start = progress.started + budget - upcoming.lock_timeout_ms / 1000
        if (
            attempt.number >= self._settings.lock_attempts
            or time.monotonic() + attempt.pause_after > last_start
        ):
            raise GaveUp(self.give_up_message(cause, attempt.number, elapsed))
        blockers = self._watch.blockers() if self._watch is not None else []
        log.info(
            "%s on %s (attempt %d of at most %d, lock_timeout %s%s); retrying in %.1f s%s",
            cause,
            describe_step(progress.current),
            attempt.number,
            self._settings.lock_attempts,
            format_ms(attempt.lock_timeout_ms),
            f", blocked by {self._blockers_text()}" if blockers else "",
            attempt.pause_after,
            ", or later: once those sessions have ended their transactions" if blockers else "",
        )
        time.sleep(attempt.pause_after)
        if not self._wait_for_transactions_to_end(blockers, last_start):
            raise GaveUp(
                self.give_up_message(cause, attempt.number, time.monotonic() - progress.started)
            )
        self._attempt = upcoming

    def _wait_for_transactions_to_end(self, blockers: list[Blocker], deadline: float) -> bool:
        """Whether ``blockers`` ended their transactions (an idle one holding a session
        lock: did anything at all) before ``deadline``."""
        known = [b for b in blockers if b.since is not None]
        if not known:
            return True
        params = {"pids": [b.pid for b in known], "since": [b.since for b in known]}
        while True:
            # Each look in its own transaction: within one, pg_stat_activity stays the same.
            remaining = self._connection.scalar(STILL_OPEN, params)
            self._connection.rollback()
            if not remaining:
                return True
            if time.monotonic() + BLOCKER_POLL > deadline:
                return False
            time.sleep(BLOCKER_POLL)

    def _blockers_text(self) -> str:
        if self._watch is None:
            return ""
        return "; ".join(b.describe(self._url) for b in self._watch.blockers())

    def held_too_long_message(self, hold: Hold) -> str:
        """The one line for a step stopped because the app waited too long behind it."""
        budget = format_ms(self._settings.app_wait_max)
        statement = scrub(shorten(hold.statement), self._url) if hold.statement else "?"
        if self._watch is not None and self._watch.session_ended:
            stopped = (
                "The step held the lock between two statements (the last: "
                f"{statement}), where a cancel stops nothing, so its session was ended."
            )
        else:
            stopped = f"The step's statement was cancelled: {statement}."
        return (
            f"{describe_step(self.progress.current)}: stopped: an app query waited"
            f" {hold.waited:.1f} s for {hold.what()}, which this step held, longer than"
            f" app_wait_max ({budget}; -x app_wait_max or MIGRATION_APP_WAIT_MAX)"
            f" (the app's session: {hold.describe(self._url)}). {stopped}"
            f" {self.progress.outcome()}. To fix the revision, {recipe(hold)}; then"
            " run the command again"
        )

    def give_up_message(self, cause: str, attempts: int, elapsed: float) -> str:
        progress = self.progress
        blockers = self._blockers_text()
        if blockers:
            who = f"blocked by {blockers}"
        elif self._watch is not None and self._watch.unavailable:
            who = (
                f"could not see who holds the lock ({self._watch.unavailable}); look in"
                " pg_stat_activity and pg_locks"
            )
        else:
            who = "the blocking session ended before it could be seen"
        if attempts >= self._settings.lock_attempts:
            longer = "-x lock_attempts (or MIGRATION_LOCK_ATTEMPTS) tries more often"
        else:
            longer = "-x lock_retry_for=10min (or MIGRATION_LOCK_RETRY_FOR) waits longer"
        return (
            f"{describe_step(progress.current)}: gave up after {attempts} {cause}(s) in"
            f" {human_seconds(elapsed)}; {who}. {progress.outcome()}. Let those"
            " sessions finish or end them (SELECT pg_terminate_backend(pid)), then run the"
            f" command again; {longer}"
        )
