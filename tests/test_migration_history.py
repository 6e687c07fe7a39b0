"""migration_history: every upgrade and downgrade step leaves exactly one row, in its own
transaction, with the revision file's checksum, its times, and who ran it; online, through
``--sql`` and psql, and in a caller's transaction.

Steps above the history revision are written into a copy of the migrations
(tests/refdata_support.py): the repository's own versions are never touched.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from seed_data.db import REPO_ROOT
from seed_data.migration_history import (
    CALLERS_TRANSACTION,
    HISTORY_REVISION,
    ONLINE,
    PARTLY_APPLIED,
    SQL_SCRIPT,
    project_version,
)
from seed_data.refdata.lock import file_checksum, read_lock
from tests.helpers import (
    ALEMBIC_INI,
    apply_with_psql,
    current_revision,
    history_appended,
    history_rows,
    history_steps,
    revision_steps,
    run_alembic,
)
from tests.live_support import succeeds_after_a_retry
from tests.refdata_support import Workspace
from tests.servers import PgServer

STEPS = revision_steps()
LOCKED = read_lock(REPO_ROOT / "alembic")
TRACKER_CUT = (
    "UPDATE products SET interest_rate = 4.49 WHERE code = 'tracker_mortgage'",
    "UPDATE products SET interest_rate = 4.74 WHERE code = 'tracker_mortgage'",
)


def added(before: list[dict], engine: sa.Engine) -> list[dict]:
    """The rows appended since ``before``; earlier rows must be untouched."""
    with engine.connect() as conn:
        return history_appended(before, history_rows(conn))


def steps_of(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["revision"], r["direction"], r["method"]) for r in rows]


def committed_with_alembic_version(conn: sa.Connection) -> bool:
    """The latest history row was written by the transaction that last moved alembic_version."""
    return conn.scalar(
        sa.text(
            "SELECT (SELECT xmin FROM migration_history ORDER BY id DESC LIMIT 1)::text"
            " = (SELECT xmin FROM alembic_version)::text"
        )
    )


@pytest.mark.history
def test_an_upgrade_records_every_step_with_its_checksum_times_and_who_ran_it(
    engine: sa.Engine,
) -> None:
    result = run_alembic("upgrade", "head", url=engine.url)
    assert result.returncode == 0, result.stderr
    with engine.connect() as conn:
        rows = history_rows(conn)
        user, host = conn.execute(sa.text("SELECT session_user, host(inet_client_addr())")).one()
        assert committed_with_alembic_version(conn)

    assert steps_of(rows) == [(s.revision, "upgrade", ONLINE) for s in STEPS]
    assert [r["checksum"] for r in rows] == [LOCKED[f"{s.file_stem}.py"] for s in STEPS], (
        "the checksum must be the revision file's SHA-256 as alembic/versions.sha256 has it"
    )
    for row in rows:
        assert row["database_user"] == user and row["application_name"] == "alembic"
        # NULL over a Unix socket, the client's address over TCP.
        assert (row["client_addr"] and str(row["client_addr"])) == host
        assert row["project_version"] == project_version() is not None
        assert row["started_at"] <= row["finished_at"]
        assert row["duration"] == row["finished_at"] - row["started_at"]
    for earlier, later in itertools.pairwise(rows):
        assert earlier["finished_at"] <= later["started_at"], "steps run one after the other"


def test_downgrades_append_a_row_and_a_failed_step_or_a_stamp_none(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    cut = workspace.add_revision("tracker cut", *TRACKER_CUT)
    broken = workspace.add_revision("broken", "SELECT 1 / 0", "SELECT 1")
    revision = cut.name.split("_")[4]
    config = workspace.config(head_engine)
    with head_engine.connect() as conn:
        before = history_rows(conn)

    with pytest.raises(Exception, match="division by zero"):
        command.upgrade(config, "head")
    rows = added(before, head_engine)
    assert steps_of(rows) == [(revision, "upgrade", ONLINE)], "the failed step left a row"
    assert rows[0]["checksum"] == file_checksum(cut)
    with head_engine.connect() as conn:
        assert current_revision(conn) == revision

    command.downgrade(config, "-1")
    command.stamp(config, revision)  # runs no revision: no row
    command.stamp(config, HISTORY_REVISION)
    rows = added(before, head_engine)
    assert steps_of(rows) == [(revision, "upgrade", ONLINE), (revision, "downgrade", ONLINE)]
    assert rows[1]["checksum"] == file_checksum(cut)
    assert broken.name not in {r["revision"] for r in rows}


def test_a_retried_step_leaves_one_row_timed_from_its_first_attempt(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    cut = workspace.add_revision("tracker cut", *TRACKER_CUT)
    with head_engine.connect() as conn:
        before = history_rows(conn)
    succeeds_after_a_retry(
        head_engine,
        "SELECT 1 FROM products WHERE code = 'tracker_mortgage' FOR UPDATE",
        "-c",
        str(workspace.ini),
        "-x",
        "lock_retry_for=1min",
        "upgrade",
        "head",
    )
    (row,) = added(before, head_engine)
    assert (row["revision"], row["direction"], row["checksum"]) == (
        cut.name.split("_")[4],
        "upgrade",
        file_checksum(cut),
    )
    # The first attempt waited 100 ms for the lock, then paused at least 250 ms.
    assert row["duration"] >= dt.timedelta(seconds=0.3)
    with head_engine.connect() as conn:
        assert committed_with_alembic_version(conn)


COMMITS_MIDWAY = '''"""commits midway"""

from alembic import op

revision = {revision!r}
down_revision = {down_revision!r}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("CREATE TABLE IF NOT EXISTS committed_midway (n integer)")
    op.execute("SELECT 1 / (current_setting('test.fail_late', true) IS DISTINCT FROM 'yes')::int")


def downgrade() -> None:
    op.execute("DROP TABLE committed_midway")
'''


def test_a_step_that_fails_after_committing_part_is_recorded_as_partly_applied(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    script = command.revision(workspace.config(), message="commits midway")
    assert script is not None
    Path(script.path).write_text(
        COMMITS_MIDWAY.format(revision=script.revision, down_revision=script.down_revision)
    )
    assert workspace.refdata("lock").code == 0
    config = workspace.config(head_engine)
    database = head_engine.url.database
    with head_engine.connect() as conn:
        before = history_rows(conn)
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" SET test.fail_late = yes')
        conn.commit()

    with pytest.raises(Exception, match="division by zero"):
        command.upgrade(config, "head")
    with head_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT to_regclass('committed_midway') IS NOT NULL")), (
            "the autocommit block's work should have been committed"
        )
        assert current_revision(conn) == script.down_revision
        (partial,) = added(before, head_engine)
        assert (partial["revision"], partial["direction"], partial["outcome"]) == (
            script.revision,
            "upgrade",
            PARTLY_APPLIED,
        ), "a step that failed after committing part of its work must say so in the history"
        assert partial["checksum"] == file_checksum(Path(script.path))
        assert "division by zero" in partial["note"] and "committed" in partial["note"]
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" RESET test.fail_late')
        conn.commit()

    command.upgrade(config, "head")
    rows = added(before, head_engine)
    assert [(r["revision"], r["outcome"]) for r in rows] == [
        (script.revision, PARTLY_APPLIED),
        (script.revision, "applied"),
    ]
    with head_engine.connect() as conn:
        assert committed_with_alembic_version(conn)


def test_a_failed_step_that_committed_nothing_leaves_no_row(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    workspace.add_revision("fails", "SELECT 1 / 0", "SELECT 1")
    with head_engine.connect() as conn:
        before = history_rows(conn)
    result = run_alembic("-c", str(workspace.ini), "upgrade", "head", url=head_engine.url)
    assert result.returncode != 0 and "division by zero" in result.stdout
    assert added(before, head_engine) == [], "a step rolled back whole is not partly applied"


def test_in_a_callers_transaction_the_rows_are_the_callers(engine: sa.Engine) -> None:
    config = Config(str(ALEMBIC_INI))
    with engine.connect() as callers:
        config.attributes["connection"] = callers
        command.upgrade(config, "head")
        assert steps_of(history_rows(callers)) == [
            (s.revision, "upgrade", CALLERS_TRANSACTION) for s in STEPS
        ]
        with engine.connect() as other:
            assert history_rows(other) == [], "env.py committed the caller's transaction"
        callers.commit()
    with engine.connect() as conn:
        assert len(history_rows(conn)) == len(STEPS)


def sql_script(workspace: Workspace, direction: str, span: str, folder: Path) -> Path:
    buffer = io.StringIO()
    getattr(command, direction)(Config(str(workspace.ini), output_buffer=buffer), span, sql=True)
    path = folder / f"{direction}.sql"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def test_sql_scripts_record_upgrades_and_downgrades_when_psql_runs_them(
    workspace: Workspace, pg_server: PgServer, head_engine: sa.Engine, tmp_path: Path
) -> None:
    parent = ScriptDirectory.from_config(workspace.config()).get_current_head()
    cut = workspace.add_revision("tracker cut", *TRACKER_CUT)
    revision = cut.name.split("_")[4]
    upgrade = sql_script(workspace, "upgrade", f"{parent}:{revision}", tmp_path)
    downgrade = sql_script(workspace, "downgrade", f"{revision}:{parent}", tmp_path)
    assert "INSERT INTO migration_history" in downgrade.read_text()
    with head_engine.connect() as conn:
        before = history_rows(conn)

    apply_with_psql(pg_server.bin_dir, head_engine, upgrade)
    apply_with_psql(pg_server.bin_dir, head_engine, downgrade)

    rows = added(before, head_engine)
    assert steps_of(rows) == [
        (revision, "upgrade", SQL_SCRIPT),
        (revision, "downgrade", SQL_SCRIPT),
    ]
    assert {r["checksum"] for r in rows} == {file_checksum(cut)}
    assert {r["application_name"] for r in rows} == {"psql"}
    assert rows[0]["finished_at"] <= rows[1]["started_at"], "each time is taken as psql runs it"


def test_the_history_is_append_only(head_engine: sa.Engine) -> None:
    with head_engine.connect() as conn:
        before = history_steps(conn)
    for statement in (
        "UPDATE migration_history SET checksum = NULL",
        "DELETE FROM migration_history",
        "TRUNCATE migration_history",
    ):
        with head_engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as refused:
            conn.exec_driver_sql(statement)
        assert "migration_history is append-only" in str(refused.value)
    with head_engine.connect() as conn:
        assert history_steps(conn) == before
