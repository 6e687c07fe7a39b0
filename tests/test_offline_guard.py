"""A ``--sql`` script checks where psql runs it before any statement that changes anything.

* at another revision than the one it was written for it stops, and psql's HINT names the
  command that writes the script for this database (which also finishes a script that
  stopped between revisions);
* under ``psql -1`` (one transaction, which the script's own BEGIN and COMMIT would end
  early) it stops, saying to run it without ``-1``;
* stopped inside a revision that commits part of its work (after the sequence-number
  revision's ADD CONSTRAINT, say), the same script run again finishes it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from tests.helpers import (
    config_for,
    current_revision,
    run_alembic,
    run_psql,
    schema_fingerprint,
    snapshot_rows,
)
from tests.live_support import BEFORE_IT, SEQUENCE_NUMBERS, numbering_problems, seed_conversations
from tests.servers import PgServer

HINT = re.compile(r"^HINT:  (.*)$", re.MULTILINE)


def offline_script(folder: Path, *args: str) -> Path:
    result = run_alembic(*args, "--sql", url=None)
    assert result.returncode == 0, result.stderr
    path = folder / f"{'_'.join(a.replace(':', '-') for a in args)}.sql"
    path.write_text(result.stdout, encoding="utf-8")
    return path


def state(engine: sa.Engine) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    with engine.connect() as conn:
        return snapshot_rows(conn), schema_fingerprint(conn)


@pytest.fixture
def before_sequence_numbers(engine: sa.Engine) -> sa.Engine:
    """A database at the revision before sequence numbers, with messages to number."""
    command.upgrade(config_for(engine), BEFORE_IT)
    with engine.begin() as conn:
        seed_conversations(conn, conversations=6, messages_each=3)
    return engine


def test_a_script_applied_at_another_revision_changes_nothing_and_says_what_to_run(
    pg_server: PgServer, head_engine: sa.Engine, tmp_path: Path
) -> None:
    script = offline_script(tmp_path, "upgrade", f"{BEFORE_IT}:head")
    before = state(head_engine)
    with head_engine.connect() as conn:
        head = current_revision(conn)

    result = run_psql(pg_server.bin_dir, head_engine, script)

    assert result.returncode == 3, result.stdout
    assert (
        f"this script was written for a database at {BEFORE_IT}, but this one is at {head}"
        " already; nothing was changed"
    ) in result.stderr
    (hint,) = HINT.findall(result.stderr)
    assert hint == "There is nothing to run: it is where this script leads."
    assert state(head_engine) == before, "the script changed the database before it stopped"


def test_a_script_under_psql_single_transaction_changes_nothing(
    pg_server: PgServer, before_sequence_numbers: sa.Engine, tmp_path: Path
) -> None:
    script = offline_script(tmp_path, "upgrade", f"{BEFORE_IT}:head")
    before = state(before_sequence_numbers)

    for option in ("-1", "--single-transaction"):
        result = run_psql(pg_server.bin_dir, before_sequence_numbers, script, option)
        assert result.returncode == 3, result.stdout
        assert "this script is running inside a transaction block" in result.stderr
        (hint,) = HINT.findall(result.stderr)
        assert hint.startswith("Run it without -1: psql -v ON_ERROR_STOP=1 -f FILE.")
        assert state(before_sequence_numbers) == before


def test_a_script_stopped_after_its_add_constraint_steps_finishes_when_run_again(
    pg_server: PgServer, head_engine: sa.Engine, before_sequence_numbers: sa.Engine, tmp_path: Path
) -> None:
    script = offline_script(tmp_path, "upgrade", f"{BEFORE_IT}:head")
    text = script.read_text(encoding="utf-8")
    # Stop where a failure would: just after the NOT VALID check was committed.
    added = text.index("ADD CONSTRAINT ck_messages_sequence_no_not_null")
    stopped = tmp_path / "stopped.sql"
    stopped.write_text(text[: text.index("COMMIT;", added) + len("COMMIT;")] + "\n")
    assert run_psql(pg_server.bin_dir, before_sequence_numbers, stopped).returncode == 0
    with before_sequence_numbers.connect() as conn:
        assert current_revision(conn) == BEFORE_IT
        assert (
            conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_constraint WHERE conname = 'ck_messages_sequence_no_not_null'"
                )
            )
            == 1
        )

    result = run_psql(pg_server.bin_dir, before_sequence_numbers, script)

    assert result.returncode == 0, result.stderr
    with before_sequence_numbers.connect() as offline, head_engine.connect() as live:
        assert numbering_problems(offline) == []
        assert schema_fingerprint(offline) == schema_fingerprint(live)


def test_a_script_stopped_between_revisions_names_the_script_that_finishes_it(
    pg_server: PgServer, head_engine: sa.Engine, before_sequence_numbers: sa.Engine, tmp_path: Path
) -> None:
    script = offline_script(tmp_path, "upgrade", f"{BEFORE_IT}:head")
    command.upgrade(config_for(before_sequence_numbers), SEQUENCE_NUMBERS)  # then it stopped
    before = state(before_sequence_numbers)

    result = run_psql(pg_server.bin_dir, before_sequence_numbers, script)

    assert result.returncode == 3 and state(before_sequence_numbers) == before
    (hint,) = HINT.findall(result.stderr)
    command_line = re.search(r"alembic (upgrade \S+ --sql)", hint)
    assert command_line is not None, hint
    assert command_line[1].startswith(f"upgrade {SEQUENCE_NUMBERS}:")
    finishing = offline_script(tmp_path, *shlex.split(command_line[1])[:-1])
    assert run_psql(pg_server.bin_dir, before_sequence_numbers, finishing).returncode == 0
    with before_sequence_numbers.connect() as offline, head_engine.connect() as live:
        assert current_revision(offline) == current_revision(live)
        assert schema_fingerprint(offline) == schema_fingerprint(live)
