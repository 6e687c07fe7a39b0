"""Two heads at once: merged per field, rolled back after a merge, a head dropped from the lock;
and output a reader cuts short.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from seed_data.refdata.lock import read_lock
from tests.helpers import run_alembic, snapshot_rows
from tests.refdata_support import Workspace
from tests.servers import PgServer
from tests.test_refdata_failures import one_line
from tests.test_refdata_history import make_heads, rate, rows_in_either_order
from tests.test_refdata_scale import add_faqs, faq_rows


def describe(code: str, text: str) -> str:
    return f"UPDATE products SET description = '{text}' WHERE code = '{code}'"


def test_heads_that_change_different_fields_of_one_row_merge(
    workspace: Workspace, pg_server: PgServer, head_template: str
) -> None:
    heads = make_heads(
        workspace,
        ("tracker cut", rate("tracker_mortgage", "4.49"), rate("tracker_mortgage", "4.74")),
        (
            "tracker reworded",
            describe("tracker_mortgage", "Follows the Bank Rate."),
            "UPDATE products SET description = (SELECT description FROM products"
            " WHERE code = 'tracker_mortgage') WHERE code = 'tracker_mortgage'",
        ),
    )

    result = workspace.refdata("check")

    assert result.code == 1
    assert "that change different reference rows or fields since their common ancestor" in (
        result.out
    )
    first, second = rows_in_either_order(workspace, pg_server, head_template, heads)
    assert first == second
    assert first["products"]["tracker_mortgage"]["description"] == "Follows the Bank Rate."
    assert workspace.refdata("merge", "-m", "merge the tracker changes").code == 0


def test_heads_that_change_the_same_field_of_one_row_conflict(workspace: Workspace) -> None:
    make_heads(
        workspace,
        ("reworded once", describe("tracker_mortgage", "One."), describe("tracker_mortgage", "x")),
        ("reworded twice", describe("tracker_mortgage", "Two."), describe("tracker_mortgage", "x")),
    )
    result = workspace.refdata("check")
    assert result.code == 1
    assert "change the same fields of reference rows" in result.out
    assert "      description: " in result.out


def test_downgrade_one_step_after_a_merge_names_the_parents_to_choose_from(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    heads = make_heads(
        workspace,
        ("tracker cut", rate("tracker_mortgage", "4.49"), rate("tracker_mortgage", "4.74")),
        ("loan cut", rate("personal_loan", "5.90"), rate("personal_loan", "6.40")),
    )
    assert workspace.refdata("merge", "-m", "merge the cuts").code == 0
    merge = ScriptDirectory.from_config(workspace.config()).get_current_head()
    command.upgrade(workspace.config(head_engine), "head")
    with head_engine.connect() as conn:
        before = snapshot_rows(conn)

    done = run_alembic("-c", str(workspace.ini), "downgrade", "-1", url=head_engine.url)

    assert done.returncode != 0 and "Traceback" not in done.stderr
    first, second = sorted(heads)  # as the merge revision lists them
    assert done.stdout.splitlines() == [
        f"FAILED: a relative downgrade from the merge revision {merge} is ambiguous: it merges"
        f" {first}, {second}. To unapply the merge alone (every branch stays applied), run"
        f" `alembic downgrade {first}`; to keep only {first}, then `alembic downgrade"
        f" {second}@-1` (unapplies {second}); to keep only {second}, then `alembic downgrade"
        f" {first}@-1` (unapplies {first})"
    ], done.stdout
    with head_engine.connect() as conn:
        assert snapshot_rows(conn) == before, "nothing may change"

    # The advice, followed: back to the first head alone.
    for target in (first, f"{second}@-1"):
        done = run_alembic("-c", str(workspace.ini), "downgrade", target, url=head_engine.url)
        assert done.returncode == 0, done.stdout + done.stderr
    with head_engine.connect() as conn:
        at = conn.scalars(sa.text("SELECT version_num FROM alembic_version")).all()
        assert at == [first], at


def test_a_dropped_head_is_forgotten_by_the_lock_and_the_next_revision_is_written(
    workspace: Workspace,
) -> None:
    _, rise = make_heads(
        workspace,
        ("tracker cut", rate("tracker_mortgage", "4.49"), rate("tracker_mortgage", "4.74")),
        ("tracker rise", rate("tracker_mortgage", "4.99"), rate("tracker_mortgage", "4.74")),
    )
    result = workspace.refdata("check")
    assert "`refdata.py lock --forget FILE`" in result.out, "the advice names the command"
    dropped = next(p for p in workspace.new_revision_files() if rise in p.name)

    refused = workspace.refdata("lock", "--forget", dropped.name)
    assert refused.code == 2
    assert one_line(refused.err) == (
        f"error: {dropped.name} still exists: `lock --forget` only un-records a revision that "
        "was deleted; delete it first (git rm), if no database has run it"
    )
    dropped.unlink()
    assert workspace.refdata("revision", "-m", "the rise again").code == 2, "the lock objects"
    result = workspace.refdata("check")
    assert f"un-record it with `refdata.py lock --forget {dropped.name}`" in result.out

    result = workspace.refdata("lock", "--forget", dropped.name)

    assert result.code == 0, result.err
    assert result.out == f"forgot {dropped.name}\n"
    assert dropped.name not in read_lock(workspace.root / "alembic")
    workspace.edit("products", "interest_rate: 4.74", "interest_rate: 4.99")
    result = workspace.refdata("revision", "-m", "the rise again")
    assert result.code == 0, result.err
    again = workspace.refdata("lock", "--forget", dropped.name)
    assert again.code == 2 and "is not recorded in" in one_line(again.err)


def test_forgetting_a_revision_forgets_its_data_files(workspace: Workspace) -> None:
    add_faqs(workspace, faq_rows(150))
    assert workspace.refdata("revision", "-m", "many FAQs").code == 0
    (generated,) = workspace.new_revision_files()
    data = generated.with_suffix("")
    generated.unlink()
    for path in data.iterdir():
        path.unlink()
    data.rmdir()
    missing = [line for line in workspace.refdata("check").out.splitlines() if "missing" in line]
    assert len(missing) == 1 and missing[0].startswith(f"DRIFT: {generated.name} is recorded")

    result = workspace.refdata("lock", "--forget", str(generated))

    assert result.code == 0, result.err
    assert result.out == (f"forgot {generated.name}\nforgot {generated.stem}/faqs.added.csv\n")
    assert workspace.untouched()


def test_output_cut_short_by_its_reader_does_not_stop_the_revision(
    workspace: Workspace,
) -> None:
    add_faqs(workspace, faq_rows(30))
    # Unbuffered, so that the first line arrives at once and every later one meets the
    # closed pipe, as behind `| head -1`.
    unbuffered = {"PYTHONUNBUFFERED": "1"}
    with workspace.process("revision", "-m", "30 new FAQs", env=unbuffered) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()  # what `| head -1` reads, before it goes
        process.stdout.close()
        err = process.stderr.read()
        status = process.wait(timeout=120)

    assert first.startswith("faqs: 30 to add")
    assert status == 0, err
    assert err == "", "no broken-pipe error, no traceback"
    (generated,) = workspace.new_revision_files()
    assert generated.name in read_lock(workspace.root / "alembic")
