"""The applied history outlives rollbacks, reports tampering, and can be repaired.

* Routine downgrades (the README's rollback included) keep every migration_history row and
  the demo data-set record; a database built by the released history revision keeps its
  rows too.
* ``check --live`` reports as drift (exit 1) whatever makes the history untrustworthy:
  deleted rows (a gap, an emptied table, the history revision's own row), a stamp over a
  downgrade, a checksum that is no text of the file the lock knows.
* ``scripts/repair_history.py`` makes a dropped or damaged table usable, keeping the rows
  that survive and marking what was lost as lost.

Revisions above head are written in a copy of the migrations (tests/refdata_support.py).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from seed_data.db import REPO_ROOT
from seed_data.migration_history import (
    HISTORY_REVISION,
    HISTORY_TABLE,
    KEPT_TABLES,
    NOT_RECORDED,
    RECORD_LOST,
    SQL_SCRIPT,
)
from seed_data.refdata.lock import file_checksum, read_earlier
from tests.demo_support import Loader
from tests.helpers import (
    alembic_env,
    apply_with_psql,
    config_for,
    current_revision,
    history_appended,
    history_rows,
    history_rows_since,
    revision_steps,
    run_alembic,
    snapshot_rows,
)
from tests.refdata_support import Workspace, aim_database_url
from tests.servers import PgServer

STEPS = revision_steps()
REVISION = {step.file_stem.split("_", 5)[-1]: step for step in STEPS}
ROLLBACK = REVISION["catalogue_update_for_2027"].revision  # the README's documented rollback
HISTORY_FILE = f"{REVISION['applied_migration_history'].file_stem}.py"
RELEASED = Path(__file__).parent / "released"
REPAIR_SCRIPT = REPO_ROOT / "scripts" / "repair_history.py"
TRACKER_CUT = (
    "UPDATE products SET interest_rate = 4.49 WHERE code = 'tracker_mortgage'",
    "UPDATE products SET interest_rate = 4.74 WHERE code = 'tracker_mortgage'",
)
APPEND_ONLY = ("migration_history_append_only", "migration_history_no_truncate")


def add_tracker_cut(workspace: Workspace) -> Path:
    """A revision above head, and the declared rate it makes (so files, head and a
    database at head agree)."""
    workspace.edit("products", "interest_rate: 4.74", "interest_rate: 4.49")
    return workspace.add_revision("tracker cut", *TRACKER_CUT)


def stamp_over_a_downgrade(workspace: Workspace, engine: sa.Engine) -> str:
    """A revision upgraded, downgraded, then stamped as applied: the database says it is
    not, alembic_version says it is. Returns its id."""
    cut = add_tracker_cut(workspace).name.split("_")[4]
    config = workspace.config(engine)
    command.upgrade(config, "head")
    command.downgrade(config, "-1")
    command.stamp(config, "head")
    return cut


def tamper(engine: sa.Engine, *statements: str) -> None:
    """What a superuser can do: the append-only triggers off, statements, triggers on."""
    with engine.begin() as conn:
        for trigger in APPEND_ONLY:
            conn.exec_driver_sql(f"ALTER TABLE {HISTORY_TABLE} DISABLE TRIGGER {trigger}")
        for statement in statements:
            conn.exec_driver_sql(statement)
        for trigger in APPEND_ONLY:
            conn.exec_driver_sql(f"ALTER TABLE {HISTORY_TABLE} ENABLE TRIGGER {trigger}")


@pytest.mark.parametrize("tampering", ["SET note = 'edited'", "DELETE"])
def test_reading_only_the_appended_history_rows_still_notices_a_changed_or_deleted_one(
    head_engine: sa.Engine, tampering: str
) -> None:
    """The row round trip reads each history row once (tests/helpers.history_rows_since);
    the rows it read before must still be checked as untouched."""
    with head_engine.connect() as conn:
        before = history_rows(conn)
    command.downgrade(config_for(head_engine), "-1")
    with head_engine.connect() as conn:
        grown = history_rows_since(conn, before)
        assert grown == history_rows(conn), "the appended rows read on their own differ"
    statement = (
        f"DELETE FROM {HISTORY_TABLE}"
        if tampering == "DELETE"
        else (f"UPDATE {HISTORY_TABLE} {tampering}")
    )
    tamper(head_engine, f"{statement} WHERE id = {before[0]['id']}")
    with head_engine.connect() as conn, pytest.raises(AssertionError, match="append-only"):
        history_rows_since(conn, grown)


def repair(url: sa.URL, workspace: Workspace | None = None) -> subprocess.CompletedProcess[str]:
    """The real repair command, on this checkout or a workspace's migrations."""
    config = ["--config", str(workspace.ini)] if workspace else []
    return subprocess.run(
        [sys.executable, str(REPAIR_SCRIPT), *config],
        cwd=REPO_ROOT,
        env=alembic_env(url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_documented_rollback_keeps_the_history_and_the_demo_record(
    head_engine: sa.Engine,
    load_fixtures: Loader,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_fixtures(head_engine, "--customers", "3").code == 0
    with head_engine.connect() as conn:
        history, kept = history_rows(conn), snapshot_rows(conn)["demo_data_set"]

    result = run_alembic("downgrade", ROLLBACK, url=head_engine.url)
    assert result.returncode == 0, result.stdout + result.stderr
    with head_engine.connect() as conn:
        assert set(KEPT_TABLES) <= set(snapshot_rows(conn))
        assert snapshot_rows(conn)["demo_data_set"] == kept, "the rollback lost the demo record"
        taken_back = history_appended(history, history_rows(conn))
    above = [s.revision for s in STEPS[[s.revision for s in STEPS].index(ROLLBACK) + 1 :]]
    assert [(r["revision"], r["direction"]) for r in taken_back] == [
        (revision, "downgrade") for revision in reversed(above)
    ], "every step of the rollback, the history revision's own included, must be recorded"

    assert run_alembic("upgrade", "head", url=head_engine.url).returncode == 0
    with head_engine.connect() as conn:
        after = history_appended(history, history_rows(conn))
    assert [(r["revision"], r["direction"], r["method"]) for r in after[len(above) :]] == [
        (revision, "upgrade", "online") for revision in above
    ], "upgrading again appends its steps; nothing is marked not recorded again"
    # The demo data is still of its recorded data set: a bigger load adds to it.
    assert load_fixtures(head_engine, "--customers", "5").code == 0
    aim_database_url(monkeypatch, head_engine)
    result = workspace.refdata("check", "--live")
    assert result.code == 0, result.out


def test_a_sql_script_after_the_rollback_records_each_step_once(
    pg_server: PgServer, head_engine: sa.Engine, tmp_path: Path
) -> None:
    """Below the history revision the script cannot know whether the table was kept: psql
    finds out, and writes each step's row where it is (and no not_recorded rows)."""
    assert run_alembic("downgrade", ROLLBACK, url=head_engine.url).returncode == 0
    result = run_alembic("upgrade", f"{ROLLBACK}:head", "--sql", url=None)
    assert result.returncode == 0, result.stderr
    script = tmp_path / "upgrade.sql"
    script.write_text(result.stdout, encoding="utf-8")
    with head_engine.connect() as conn:
        history = history_rows(conn)

    apply_with_psql(pg_server.bin_dir, head_engine, script)

    with head_engine.connect() as conn:
        added = history_appended(history, history_rows(conn))
    above = [s.revision for s in STEPS[[s.revision for s in STEPS].index(ROLLBACK) + 1 :]]
    assert [(r["revision"], r["direction"], r["method"]) for r in added] == [
        (revision, "upgrade", SQL_SCRIPT) for revision in above
    ]


def test_a_database_built_by_the_released_history_revision_keeps_its_rows(
    workspace: Workspace, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = RELEASED / f"{HISTORY_FILE}.txt"
    assert file_checksum(released) in read_earlier(REPO_ROOT / "alembic")[HISTORY_FILE], (
        "the lock must keep the released text's digest as an earlier text of the file"
    )
    current, lock = workspace.versions / HISTORY_FILE, workspace.lock.read_text()
    rewritten = current.read_bytes()
    # The release before this one: the released text, and its line in the lock.
    current.write_bytes(released.read_bytes())
    workspace.lock.write_text(
        lock.replace(
            file_checksum(Path(REPO_ROOT / "alembic" / "versions" / HISTORY_FILE)),
            file_checksum(released),
        )
    )
    command.upgrade(workspace.config(engine), HISTORY_REVISION)  # as production did then
    current.write_bytes(rewritten)  # this release
    workspace.lock.write_text(lock)
    with engine.connect() as conn:
        history = history_rows(conn)
    assert history[-1]["checksum"] == file_checksum(released)

    for args in (("upgrade", "head"), ("downgrade", ROLLBACK), ("upgrade", "head")):
        result = run_alembic("-c", str(workspace.ini), *args, url=engine.url)
        assert result.returncode == 0, result.stdout + result.stderr
    with engine.connect() as conn:
        assert history_appended(history, history_rows(conn)), "rows were lost"
    aim_database_url(monkeypatch, engine)
    result = workspace.refdata("check", "--live")
    assert result.code == 0, result.out  # the released text is a text the lock knows


def test_a_step_rolled_back_after_writing_its_row_leaves_no_gap_in_the_ids(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids have gaps only where rows were deleted: a caller's transaction rolled back after
    its steps wrote their rows (as a commit that fails would) takes its ids back."""
    add_tracker_cut(workspace)
    config = workspace.config()
    with head_engine.connect() as callers:
        config.attributes["connection"] = callers
        command.upgrade(config, "head")
        callers.rollback()
    command.upgrade(workspace.config(head_engine), "head")
    with head_engine.connect() as conn:
        ids = [row["id"] for row in history_rows(conn)]
    assert ids == list(range(1, len(ids) + 1))
    aim_database_url(monkeypatch, head_engine)
    assert workspace.refdata("check", "--live").code == 0


def _delete_revision(revision: str) -> str:
    return f"DELETE FROM {HISTORY_TABLE} WHERE revision = '{revision}'"


def _delete_middle_row() -> str:
    return f"DELETE FROM {HISTORY_TABLE} WHERE id = 3"


def _truncate() -> str:
    return f"TRUNCATE {HISTORY_TABLE}"


def _edit_checksum(revision: str) -> str:
    return f"UPDATE {HISTORY_TABLE} SET checksum = repeat('ab', 32) WHERE revision = '{revision}'"


TAMPERING: dict[str, tuple[Callable[[str], str], str]] = {
    "a row of a revision applied after the history began": (
        _delete_revision,
        "has no migration_history row for revision {cut}, which it has applied",
    ),
    "the history revision's own row": (
        lambda cut: _delete_revision(HISTORY_REVISION),
        f"has no migration_history row for revision {HISTORY_REVISION}",
    ),
    "a row in the middle (a gap in the ids)": (
        lambda cut: _delete_middle_row(),
        "has gaps in its migration_history ids (missing: 3)",
    ),
    "every row (TRUNCATE)": (lambda cut: _truncate(), "has an empty migration_history"),
    "a checksum": (_edit_checksum, "ran another text of revision {cut}"),
}


@pytest.mark.parametrize("kind", TAMPERING)
def test_check_live_reports_tampering_with_the_history_as_drift(
    kind: str, workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = add_tracker_cut(workspace).name.split("_")[4]
    command.upgrade(workspace.config(head_engine), "head")
    statement, said = TAMPERING[kind]
    tamper(head_engine, statement(cut))
    with head_engine.connect() as conn:
        before = snapshot_rows(conn)
    aim_database_url(monkeypatch, head_engine)

    result = workspace.refdata("check", "--live")

    assert result.code == 1, f"tampering with {kind} passed the check:\n{result.out}"
    drift = [line for line in result.out.splitlines() if line.startswith("DRIFT: ")]
    assert any(said.format(cut=cut) in line for line in drift), result.out
    with head_engine.connect() as conn:
        assert snapshot_rows(conn) == before, "check --live must never write"


def test_check_live_reports_a_stamp_over_a_downgrade(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = stamp_over_a_downgrade(workspace, head_engine)
    aim_database_url(monkeypatch, head_engine)

    result = workspace.refdata("check", "--live")

    assert result.code == 1
    assert f"includes {cut}, but the last step recorded for it is a downgrade" in result.out


def test_a_checksum_of_a_text_the_lock_keeps_as_earlier_passes(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = add_tracker_cut(workspace)
    command.upgrade(workspace.config(head_engine), "head")
    cut.write_text(cut.read_text() + "# rewritten on purpose, with a documented reason\n")
    assert workspace.refdata("lock", "--rehash", cut.name, "--keep-earlier", "a reason").code == 0
    aim_database_url(monkeypatch, head_engine)
    assert workspace.refdata("check", "--live").code == 0
    # Re-recorded without keeping the earlier text, the same database is drift.
    cut.write_text(cut.read_text() + "# and again\n")
    lock = workspace.lock.read_text()
    workspace.lock.write_text(
        "".join(line + "\n" for line in lock.splitlines() if cut.name not in line)
    )
    assert workspace.refdata("lock").code == 0
    assert workspace.refdata("check", "--live").code == 1


def test_repair_makes_a_dropped_table_again_and_marks_every_record_lost(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with head_engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {HISTORY_TABLE}")
    cut = add_tracker_cut(workspace)
    with head_engine.connect() as conn:
        before = snapshot_rows(conn)
        at = current_revision(conn)

    # A deploy is refused before it changes anything, pointing at the repair.
    result = run_alembic("-c", str(workspace.ini), "upgrade", "head", url=head_engine.url)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("FAILED: ")]
    assert "has no migration_history table" in line and "scripts/repair_history.py" in line
    with head_engine.connect() as conn:
        assert snapshot_rows(conn) == before and current_revision(conn) == at

    repaired = repair(head_engine.url, workspace)
    assert repaired.returncode == 0, repaired.stderr
    assert "made migration_history again" in repaired.stdout
    with head_engine.connect() as conn:
        rows = history_rows(conn)
    assert {r["revision"] for r in rows} == {s.revision for s in STEPS}
    assert {(r["method"], r["outcome"], r["checksum"]) for r in rows} == {
        (NOT_RECORDED, RECORD_LOST, None)
    }, "lost records must be marked as lost, never as applied"
    assert all("marked lost by `python scripts/repair_history.py`" in r["note"] for r in rows)

    aim_database_url(monkeypatch, head_engine)
    result = workspace.refdata("check", "--live")
    assert result.code == 1 and ", head is " in result.out  # the cut is still to run
    result = run_alembic("-c", str(workspace.ini), "upgrade", "head", url=head_engine.url)
    assert result.returncode == 0, result.stdout
    with head_engine.connect() as conn:
        last = history_rows(conn)[-1]
    assert (last["revision"], last["checksum"]) == (cut.name.split("_")[4], file_checksum(cut))
    result = workspace.refdata("check", "--live")
    assert result.code == 0, result.out
    assert f"lost the record of {len(STEPS)} revision(s)" in result.out


def test_repair_keeps_surviving_rows_and_marks_deleted_ones_and_a_stamp_as_lost(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = stamp_over_a_downgrade(workspace, head_engine)
    tamper(head_engine, f"DELETE FROM {HISTORY_TABLE} WHERE id = 2")
    with head_engine.begin() as conn:  # and the append-only trigger left off
        conn.exec_driver_sql(f"ALTER TABLE {HISTORY_TABLE} DISABLE TRIGGER {APPEND_ONLY[0]}")
        survivors = history_rows(conn)
    aim_database_url(monkeypatch, head_engine)
    assert workspace.refdata("check", "--live").code == 1

    repaired = repair(head_engine.url, workspace)
    assert repaired.returncode == 0, repaired.stderr
    assert f"enabled the trigger {APPEND_ONLY[0]} again" in repaired.stdout
    with head_engine.connect() as conn:
        marks = history_appended(survivors, history_rows(conn))
    second = STEPS[1].revision  # its only row was id 2
    assert {m["revision"] for m in marks} == {cut, second}
    assert all(m["outcome"] == RECORD_LOST for m in marks)
    notes = {m["revision"]: m["note"] for m in marks}
    assert "ids 2 were missing" in notes[cut] and "is a downgrade" in notes[cut]
    assert "its history rows are gone" in notes[second]
    result = workspace.refdata("check", "--live")
    assert "lost the record of 2 revision(s)" in result.out
    # The history is accounted for; what the stamp hid (the cut never ran) still shows.
    (drift,) = [line for line in result.out.splitlines() if line.startswith("DRIFT: ")]
    assert "has reference rows that differ from head" in drift
    with head_engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        conn.exec_driver_sql(f"DELETE FROM {HISTORY_TABLE}")

    again = repair(head_engine.url, workspace)
    assert again.returncode == 0 and again.stdout.startswith("nothing to repair")


def test_repair_moves_a_table_missing_a_column_aside_with_its_rows(
    head_engine: sa.Engine,
) -> None:
    with head_engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {HISTORY_TABLE} DROP COLUMN checksum")
        count = conn.scalar(sa.text(f"SELECT count(*) FROM {HISTORY_TABLE}"))
    repaired = repair(head_engine.url)
    assert repaired.returncode == 0, repaired.stderr
    (moved,) = [line for line in repaired.stdout.splitlines() if "moved the damaged" in line]
    aside = moved.rsplit(" to ", 1)[1]
    with head_engine.connect() as conn:
        assert conn.scalar(sa.text(f"SELECT count(*) FROM {aside}")) == count
        assert {r["outcome"] for r in history_rows(conn)} == {RECORD_LOST}
