"""What ``check --live`` and ``log --live`` make of a live database's migration_history, at
its edges: the newest applied revision (checked like every other), a revision applied more
than once (judged by the text that ran last), one upgraded and then downgraded (not applied
now), and the live database only ever read, in a read-only transaction.

Revisions are added to a copy of the migrations (tests/refdata_support.py) on top of
whatever head the repository has, so nothing here depends on today's head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from seed_data.refdata.lock import file_checksum
from tests.helpers import snapshot_rows
from tests.refdata_support import Workspace, aim_database_url

SHOWN_DIGITS = 12  # how much of a checksum a DRIFT line shows


def head_of(workspace: Workspace) -> str:
    head = ScriptDirectory.from_config(workspace.config()).get_current_head()
    assert head is not None
    return head


def revision_file(workspace: Workspace, revision: str) -> Path:
    found = ScriptDirectory.from_config(workspace.config()).get_revision(revision)
    assert found is not None and found.path is not None
    return Path(found.path)


def rewrite(workspace: Workspace, path: Path, text: str) -> str:
    """Give a revision file another text and record it in the lock, as a reviewed edit
    would be (so only the database can tell); the file's new checksum."""
    path.write_text(text, encoding="utf-8")
    assert workspace.refdata("lock", "--rehash", path.name).code == 0
    return file_checksum(path)


def lines_naming(output: str, revision: str) -> list[str]:
    return [line for line in output.splitlines() if revision in line]


def test_check_live_compares_the_newest_applied_revision_and_notes_it_when_stamped(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    aim_database_url(monkeypatch, head_engine)
    newest = head_of(workspace)  # what the database ran last
    path = revision_file(workspace, newest)
    rewrite(workspace, path, path.read_text(encoding="utf-8") + "\n# edited after release\n")

    result = workspace.refdata("check", "--live")

    assert result.code == 1, result.out + result.err
    (drift,) = lines_naming(result.out, newest)
    assert drift.startswith("DRIFT: ") and f"ran another text of revision {newest}" in drift

    # A revision on top, stamped rather than run: the newest applied, and no row says so.
    stamped = workspace.add_revision("stamped, not run", "SELECT 1", "SELECT 1")
    stamped_id = stamped.name.split("_")[4]
    command.stamp(workspace.config(head_engine), stamped_id)

    result = workspace.refdata("check", "--live")

    said = lines_naming(result.out, stamped_id)
    assert said and any("stamp" in line for line in said), (
        f"{stamped_id} is applied without a history row and nothing says so:\n{result.out}"
    )


def test_check_live_judges_a_revision_by_the_text_it_ran_last(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    aim_database_url(monkeypatch, head_engine)
    below = head_of(workspace)
    path = workspace.add_revision("run twice", "SELECT 1", "SELECT 1")
    revision = path.name.split("_")[4]
    first_text = path.read_text(encoding="utf-8")
    config = workspace.config(head_engine)
    command.upgrade(config, revision)  # ran the first text
    command.downgrade(config, below)
    second = rewrite(workspace, path, first_text + "\n# second text\n")
    command.upgrade(config, revision)  # ran the second text, the one applied now

    result = workspace.refdata("check", "--live")

    assert result.code == 0, result.out + result.err
    assert not [line for line in lines_naming(result.out, revision) if "DRIFT" in line]

    rewrite(workspace, path, first_text)  # the file back at the text that ran first
    result = workspace.refdata("check", "--live")

    assert result.code == 1, result.out + result.err
    (drift,) = lines_naming(result.out, revision)
    assert f"ran another text of revision {revision}" in drift
    assert f"from a file with SHA-256 {second[:SHOWN_DIGITS]}..." in drift, (
        "the drift must be about the text that ran last"
    )


@contextmanager
def transaction_modes(engine: sa.Engine) -> Iterator[list[tuple[str, str]]]:
    """(statement, transaction_read_only) for each statement run on ``engine``'s database
    by any SQLAlchemy engine while inside, as the server saw the transaction."""
    seen: list[tuple[str, str]] = []

    def after(conn: sa.Connection, cursor: Any, statement: str, *_: object) -> None:
        if conn.engine.url.database != engine.url.database:
            return  # the scratch database, say
        with cursor.connection.cursor() as probe:
            probe.execute("SELECT current_setting('transaction_read_only')")
            seen.append((statement, probe.fetchone()[0]))

    sa.event.listen(sa.Engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        sa.event.remove(sa.Engine, "after_cursor_execute", after)


def assert_read_only(seen: list[tuple[str, str]], command_name: str) -> None:
    assert seen, f"{command_name} ran no statement on the live database"
    writable = [statement for statement, read_only in seen if read_only != "on"]
    assert writable == [], (
        f"{command_name} ran these on the live database outside a read-only transaction: "
        f"{writable[:3]}"
    )


def test_check_live_runs_every_statement_in_a_read_only_transaction(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    aim_database_url(monkeypatch, head_engine)
    with head_engine.connect() as conn:
        before = snapshot_rows(conn)
    with transaction_modes(head_engine) as seen:
        result = workspace.refdata("check", "--live")
    assert result.code == 0, result.out + result.err
    assert_read_only(seen, "check --live")
    with head_engine.connect() as conn:
        assert snapshot_rows(conn) == before


SAVER = ("products", "easy_access_saver")


def test_log_live_says_a_revision_upgraded_then_downgraded_is_not_applied_now(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    aim_database_url(monkeypatch, head_engine)
    below = head_of(workspace)
    path = workspace.add_revision(
        "saver rate cut, rolled back",
        "UPDATE products SET interest_rate = interest_rate - 0.25 WHERE code = 'easy_access_saver'",
        "UPDATE products SET interest_rate = interest_rate + 0.25 WHERE code = 'easy_access_saver'",
    )
    revision = path.name.split("_")[4]
    config = workspace.config(head_engine)
    command.upgrade(config, revision)
    command.downgrade(config, below)

    with transaction_modes(head_engine) as seen:
        result = workspace.refdata("log", *SAVER, "--live")

    assert result.code == 0, result.err
    entry = result.out.split(f"\n{revision}  ", 1)[1].splitlines()
    live = [line.strip() for line in entry if line.startswith("  live: ")]
    assert live[0].startswith("live: upgraded ") and live[1].startswith("live: downgraded ")
    assert live[-1] == "live: not applied now", (
        f"a revision upgraded then downgraded must not read as applied: {live}"
    )
    assert_read_only(seen, "log --live")
