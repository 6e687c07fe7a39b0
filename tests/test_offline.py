"""Offline mode: the SQL that ``alembic ... --sql`` writes does what the online run does."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from seed_data.migration_history import (
    HISTORY_REVISION,
    KEPT_TABLES,
    NOT_RECORDED,
    SQL_SCRIPT,
    project_version,
)
from tests.helpers import (
    apply_with_psql,
    config_for,
    history_appended,
    history_rows,
    history_steps,
    revision_steps,
    run_alembic,
    schema_fingerprint,
    snapshot_rows,
)
from tests.live_support import BEFORE_IT, numbering_problems, seed_conversations
from tests.servers import PgServer


@pytest.fixture(scope="module")
def offline_scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The upgrade and downgrade scripts, written without any database (url=None)."""
    folder = tmp_path_factory.mktemp("offline")
    scripts = {}
    for name, args in {
        "upgrade": ("upgrade", "head", "--sql"),
        "downgrade": ("downgrade", "head:base", "--sql"),
    }.items():
        result = run_alembic(*args, url=None)
        assert result.returncode == 0, f"alembic {' '.join(args)} failed:\n{result.stderr}"
        scripts[name] = folder / f"{name}.sql"
        scripts[name].write_text(result.stdout, encoding="utf-8")
    return scripts


@pytest.mark.history
def test_offline_upgrade_gives_the_online_schema_and_rows(
    pg_server: PgServer,
    offline_scripts: dict[str, Path],
    engine: sa.Engine,
    head_engine: sa.Engine,
) -> None:
    apply_with_psql(pg_server.bin_dir, engine, offline_scripts["upgrade"])
    with engine.connect() as offline, head_engine.connect() as online:
        assert schema_fingerprint(offline) == schema_fingerprint(online)
        # migration_history says how each step ran, so it differs by design: compared below.
        assert snapshot_rows(offline, history=False) == snapshot_rows(online, history=False), (
            "the --sql script inserts different rows from the online upgrade: check how"
            " bulk_insert renders literals (JSONB, Decimal, dates) in offline mode"
        )
        offline_history, online_history = history_rows(offline), history_rows(online)
        user = offline.scalar(sa.text("SELECT session_user"))
    assert [same_step(row) for row in offline_history] == [
        same_step(row) for row in online_history
    ], "the --sql script records other steps or checksums than the online upgrade"
    assert [row["revision"] for row in offline_history] == [s.revision for s in revision_steps()]
    for row in offline_history:
        assert row["method"] == SQL_SCRIPT and row["application_name"] == "psql"
        assert row["database_user"] == user and row["project_version"] == project_version()
        assert row["started_at"] <= row["finished_at"]
        assert row["duration"] == row["finished_at"] - row["started_at"]
    starts = [row["started_at"] for row in offline_history]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), (
        "each step's start is taken by the server when psql reaches it"
    )


def same_step(row: dict) -> tuple[str, str, str | None]:
    return row["revision"], row["direction"], row["checksum"]


@pytest.mark.history
def test_offline_downgrade_to_base_leaves_only_the_kept_records(
    pg_server: PgServer, offline_scripts: dict[str, Path], head_engine: sa.Engine
) -> None:
    with head_engine.connect() as conn:
        history = history_rows(conn)
    apply_with_psql(pg_server.bin_dir, head_engine, offline_scripts["downgrade"])
    with head_engine.connect() as conn:
        assert set(snapshot_rows(conn)) == set(KEPT_TABLES)
        schema = schema_fingerprint(conn, kept=False)
        after = history_rows(conn)
    leftovers = {kind: items for kind, items in schema.items() if items}
    # alembic keeps its (now empty) version table after a downgrade to base.
    assert set(leftovers) <= {"columns", "constraints", "indexes"}
    assert all("alembic_version" in item for items in leftovers.values() for item in items)
    # Every step the script took back is recorded, below the history revision too.
    assert [(r["revision"], r["direction"]) for r in history_appended(history, after)] == [
        (s.revision, "downgrade") for s in reversed(revision_steps())
    ]


def test_offline_backfill_numbers_rows_as_the_online_upgrade_does(
    pg_server: PgServer, engine: sa.Engine, tmp_path: Path
) -> None:
    # One conversation per batch: psql runs the DO block's COMMIT after each.
    # Up to the history revision, which records what the script ran (a fixed span: what
    # later revisions do is theirs to test).
    span = f"{BEFORE_IT}:{HISTORY_REVISION}"
    result = run_alembic("-x", "batch_size=1", "upgrade", span, "--sql", url=None)
    assert result.returncode == 0, result.stderr
    script = tmp_path / "sequence_numbers.sql"
    script.write_text(result.stdout, encoding="utf-8")
    with pg_server.database() as online:
        for target in (engine, online):
            command.upgrade(config_for(target), BEFORE_IT)
            with target.begin() as conn:
                seed_conversations(conn, conversations=8, messages_each=3)
        command.upgrade(config_for(online), HISTORY_REVISION)
        apply_with_psql(pg_server.bin_dir, engine, script)
        with engine.connect() as offline, online.connect() as live:
            assert numbering_problems(offline) == []
            offline_rows, live_rows = snapshot_rows(offline), snapshot_rows(live)
            for table in ("messages", "alembic_version"):  # customers differ by created_at
                assert offline_rows[table] == live_rows[table]
            assert schema_fingerprint(offline) == schema_fingerprint(live)
            # A script starting above base: what it runs is recorded, the revisions that
            # database had before are marked as such.
            earlier = [s.revision for s in revision_steps()]
            earlier = earlier[: earlier.index(HISTORY_REVISION) + 1]
            cut = earlier.index(BEFORE_IT) + 1
            assert history_steps(offline) == [
                *((r, "upgrade", NOT_RECORDED) for r in earlier[:cut]),
                *((r, "upgrade", SQL_SCRIPT) for r in earlier[cut:]),
            ]
