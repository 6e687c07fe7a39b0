"""Who may lock and commit: two deploys at once queue on a lock; a caller's connection is theirs."""

from __future__ import annotations

import subprocess
import time

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util import CommandError

from seed_data.db import MIGRATION_LOCK_KEY, REPO_ROOT
from seed_data.migration_history import HISTORY_REVISION, ONLINE
from tests.helpers import (
    ALEMBIC_BIN,
    ALEMBIC_INI,
    alembic_env,
    current_revision,
    history_steps,
    revision_steps,
    snapshot_rows,
)
from tests.servers import PgServer


def advisory_locks(
    conn: sa.Connection, *, granted: bool | None = None, key: int | None = None
) -> int:
    """How many advisory locks in this database are held (granted) or awaited (not); with
    ``key``, only those on that (bigint) key."""
    return conn.scalar(
        sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND (CAST(:granted AS boolean) IS NULL OR granted = :granted)"
            " AND (CAST(:key AS bigint) IS NULL"
            "      OR (classid::bigint << 32 | objid::bigint) = :key AND objsubid = 1)"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"granted": granted, "key": key},
    )


@pytest.mark.slow
def test_concurrent_upgrades_both_succeed_and_apply_history_once(
    pg_server: PgServer, engine: sa.Engine
) -> None:
    runs: list[subprocess.Popen[str]] = []
    try:
        with engine.connect() as holder:
            # Hold the lock ourselves so both runs are provably queued before either starts.
            holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            runs = [
                subprocess.Popen(
                    [str(ALEMBIC_BIN), "upgrade", HISTORY_REVISION],
                    env=alembic_env(engine.url),
                    cwd=REPO_ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(2)
            ]
            deadline = time.monotonic() + 60
            while advisory_locks(holder, granted=False) < 2:
                assert time.monotonic() < deadline, "the two alembic runs never queued on the lock"
                assert all(run.poll() is None for run in runs), "an alembic run exited early"
                time.sleep(0.1)
            holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            holder.commit()

        outputs = [run.communicate(timeout=120) for run in runs]
    finally:
        # A failed assertion must not leave alembic running against a database being dropped.
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, f"a concurrent `alembic upgrade head` failed:\n{stderr}"
    # Up to the history revision, which records what ran (later revisions add nothing here).
    steps = [s.revision for s in revision_steps()]
    steps = steps[: steps.index(HISTORY_REVISION) + 1]
    applied = [stderr.count("Running upgrade") for _, stderr in outputs]
    assert sorted(applied) == [0, len(steps)], (
        f"expected one run to apply every revision and the other none; got {applied}"
    )
    with engine.connect() as conn:
        assert current_revision(conn) == HISTORY_REVISION
        assert history_steps(conn) == [(revision, "upgrade", ONLINE) for revision in steps]


def test_callers_connection_is_neither_committed_nor_locked(engine: sa.Engine) -> None:
    config = Config(str(ALEMBIC_INI))
    with engine.connect() as callers:
        config.attributes["connection"] = callers
        command.upgrade(config, "head")
        assert callers.in_transaction(), "env.py must leave the caller's transaction open"
        with engine.connect() as other:
            # The history's rows take their ids under a transaction-level advisory lock
            # (part of the caller's transaction, gone with it); the deploy lock is not taken.
            assert advisory_locks(other, key=MIGRATION_LOCK_KEY) == 0, (
                "env.py took the deploy lock on the caller's connection"
            )
            assert current_revision(other) is None, "env.py committed the caller's transaction"
        callers.rollback()
    with engine.connect() as conn:
        assert snapshot_rows(conn) == {}, "the caller's rollback must undo the whole upgrade"
        assert advisory_locks(conn) == 0, "a lock outlived the caller's transaction"


def test_an_unknown_connection_object_is_refused_not_ignored() -> None:
    config = Config(str(ALEMBIC_INI))
    config.attributes["connection"] = "postgresql://somewhere/else"
    with pytest.raises(CommandError, match="must be a SQLAlchemy Connection or Engine"):
        command.upgrade(config, "head")
