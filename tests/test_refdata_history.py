"""What ran where, and what changed a row: ``check --live`` against migration_history's
checksums, ``log TABLE KEY`` (row blame, replayed in a scratch database), and heads that
conflict or merge cleanly. Revisions and heads are made in a copy of the migrations
(tests/refdata_support.py); the repository itself is never written."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from seed_data.db import redact
from seed_data.migration_history import HISTORY_REVISION
from seed_data.refdata.state import read_rows
from seed_data.refdata.tables import reference_tables
from tests.helpers import config_for, revision_steps, snapshot_rows
from tests.refdata_support import Workspace, aim_database_url, assert_ruff_clean, scratch_migrations
from tests.servers import PgServer
from tests.test_project_rules import ALLOWED_IMPORT_ROOTS, imported_roots
from tests.test_refdata import EDITS
from tests.test_refdata_failures import one_line, two_at_once
from tests.test_refdata_guards import changed, three_heads

STEPS = revision_steps()
REVISION = {step.file_stem.split("_", 5)[-1]: step for step in STEPS}
CATALOGUE = REVISION["product_catalogue_and_faqs"]
CATALOGUE_2027 = REVISION["catalogue_update_for_2027"]
BELOW_HISTORY = next(s.down_revision for s in STEPS if s.revision == HISTORY_REVISION)
SECRET = "s3cret-Pa55"


def rate(code: str, value: str) -> str:
    return f"UPDATE products SET interest_rate = {value} WHERE code = '{code}'"


def test_check_live_names_a_revision_that_ran_with_another_text(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = REVISION["lookup_values"]
    edited = workspace.versions / f"{lookups.file_stem}.py"
    edited.write_text(edited.read_text() + "\n# a hotfix made after release\n")
    assert workspace.refdata("lock", "--rehash", edited.name).code == 0  # only the database knows
    with head_engine.connect() as conn:
        user = conn.scalar(sa.text("SELECT session_user"))
        before = snapshot_rows(conn)
    aim_database_url(monkeypatch, head_engine.url.set(password=SECRET))

    result = workspace.refdata("check", "--live")

    assert result.code == 1, result.out + result.err
    (drift,) = [line for line in result.out.splitlines() if lookups.revision in line]
    assert drift.startswith("DRIFT: postgresql://") and SECRET not in result.out
    assert f"ran another text of revision {lookups.revision} ({edited.name})" in drift
    assert f" UTC by {user} (application " in drift and ", online) from a file with" in drift
    with head_engine.connect() as conn:
        assert snapshot_rows(conn) == before, "check --live must never write"


@pytest.mark.history
def test_check_live_reports_revisions_applied_before_the_history_as_not_recorded(
    workspace: Workspace, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    command.upgrade(config_for(engine), BELOW_HISTORY)
    aim_database_url(monkeypatch, engine)
    result = workspace.refdata("check", "--live")
    assert result.code == 1 and "run `alembic upgrade head` there" in result.out
    assert "has no migration_history table yet" in result.out

    command.upgrade(config_for(engine), "head")
    result = workspace.refdata("check", "--live")

    assert result.code == 0, result.out
    below = [s.revision for s in STEPS[: [s.revision for s in STEPS].index(HISTORY_REVISION)]]
    assert result.out.splitlines() == [
        f"note: {len(below)} revision(s) were applied to {redact(engine.url)} "
        "before its history began, so which text of them ran is not recorded: " + ", ".join(below),
        f"OK: {len(reference_tables())} reference tables agree with head; every revision file"
        " is locked",
    ]


SAVER_LOG = [
    "products easy_access_saver: 2 revision(s) changed it, oldest first (replayed on a scratch"
    " database)",
    "",
    f"{CATALOGUE.revision}  2026-11-22 07:21:51  product catalogue and FAQs: the launch range"
    " of 8 products and 6 help answers",
    "  added",
    "    code: 'easy_access_saver'",
    "    name: 'Easy Access Saver'",
    "    account_type_code: 'savings'",
]
SAVER_CHANGE = [
    f"{CATALOGUE_2027.revision}  2026-11-22 07:21:53  catalogue update for 2027: Cash ISA"
    " launch, saver rate cut, 2-year fix retired, contact hours",
    "  interest_rate: 3.75 -> 3.50",
    "  features: ['3.75% AER / 3.69% gross variable', 'Unlimited withdrawals with no notice or"
    " penalty', 'Open with £1', 'Interest paid monthly'] -> ['3.50% AER / 3.44% gross variable',"
    " 'Unlimited withdrawals with no notice or penalty', 'Open with £1', 'Interest paid"
    " monthly']",
]


def test_log_shows_each_revision_that_changed_a_row_in_the_repository(
    workspace: Workspace,
) -> None:
    result = workspace.refdata("log", "products", "easy_access_saver")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[: len(SAVER_LOG)] == SAVER_LOG
    assert lines[-len(SAVER_CHANGE) :] == SAVER_CHANGE

    result = workspace.refdata("log", "products", "easy_access_saver", "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert [(r["revision"], r["change"]) for r in document["revisions"]] == [
        (CATALOGUE.revision, "added"),
        (CATALOGUE_2027.revision, "changed"),
    ]
    assert document["revisions"][1]["fields"]["interest_rate"] == {
        "before": "3.75",
        "after": "3.50",
    }
    assert document["revisions"][0]["fields"]["is_active"] == {"before": None, "after": True}


def test_log_follows_generated_and_hand_written_revisions_and_rows_since_deleted(
    workspace: Workspace,
) -> None:
    for table, old, new in EDITS["removals"]:  # mobile-app becomes mobile-app-retired
        workspace.edit(table, old, new)
    assert workspace.refdata("revision", "-m", "retire the app FAQ").code == 0
    (generated,) = workspace.new_revision_files()
    hand_written = workspace.add_revision(
        "app FAQ goes last",
        "UPDATE faqs SET sort_order = 99 WHERE slug = 'mobile-app-retired'",
        "UPDATE faqs SET sort_order = 60 WHERE slug = 'mobile-app-retired'",
    )
    generated_id, hand_written_id = (p.name.split("_")[4] for p in (generated, hand_written))

    deleted = json.loads(workspace.refdata("log", "faqs", "mobile-app", "--json").out)
    assert [(r["revision"], r["change"]) for r in deleted["revisions"]] == [
        (CATALOGUE.revision, "added"),
        (generated_id, "removed"),
    ]
    assert deleted["revisions"][1]["message"] == "retire the app FAQ"

    result = workspace.refdata("log", "faqs", "mobile-app-retired")
    assert result.code == 0, result.err
    assert f"\n{generated_id}  " in result.out and "  added\n" in result.out
    assert result.out.endswith("  app FAQ goes last\n  sort_order: 60 -> 99\n"), result.out
    assert f"\n{hand_written_id}  (no date)  app FAQ goes last\n" in result.out


def test_log_live_says_when_each_revision_was_applied_there(
    workspace: Workspace,
    head_engine: sa.Engine,
    engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with head_engine.connect() as conn:
        user = conn.scalar(sa.text("SELECT session_user"))
    aim_database_url(monkeypatch, head_engine.url.set(password=SECRET))
    result = workspace.refdata("log", "products", "easy_access_saver", "--live")
    assert result.code == 0, result.err
    shown = redact(head_engine.url.set(password=SECRET))
    assert SECRET not in result.out and "***" in shown
    assert f"\nlive: {shown}, when each was applied there (its migration_history)\n" in result.out
    applied = [line for line in result.out.splitlines() if line.startswith("  live: ")]
    assert len(applied) == 2
    assert all(f" UTC by {user} (application " in line for line in applied)
    assert all(line.startswith("  live: upgraded 20") for line in applied)

    command.upgrade(config_for(engine), BELOW_HISTORY)
    aim_database_url(monkeypatch, engine)
    result = workspace.refdata("log", "products", "easy_access_saver", "--live", "--json")
    document = json.loads(result.out)
    assert document["history_recorded"] is False
    assert [r["applied_now"] for r in document["revisions"]] == [True, True]


def test_log_refuses_an_unknown_table_or_key_in_one_line(workspace: Workspace) -> None:
    for args, said in [
        (("product", "easy_access_saver"), "'product' is not a reference table"),
        (("products", "easy_access_savr"), "products has no row with code 'easy_access_savr' in"),
    ]:
        result = workspace.refdata("log", *args)
        assert result.code == 2 and result.out == ""
        assert said in one_line(result.err)


def make_heads(workspace: Workspace, *changes: tuple[str, str, str]) -> list[str]:
    """Hand-written revisions, each on the same parent, as branches made elsewhere would be."""
    parent = ScriptDirectory.from_config(workspace.config()).get_current_head()
    assert parent is not None
    paths = [workspace.add_revision(*change, on=parent) for change in changes]
    return [path.name.split("_")[4] for path in paths]


def test_two_heads_are_replayed_from_a_kept_copy_of_their_common_ancestor(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analysis of two heads starts at their common ancestor: a copy kept on the
    scratch server serves it, as it serves head, so its cost does not grow with the history."""
    assert workspace.refdata("check").code == 0  # head, which becomes the ancestor, is kept
    ancestor = ScriptDirectory.from_config(workspace.config()).get_current_head()
    make_heads(
        workspace,
        ("tracker cut", rate("tracker_mortgage", "4.49"), rate("tracker_mortgage", "4.74")),
        ("loan cut", rate("personal_loan", "5.90"), rate("personal_loan", "6.40")),
    )
    migrated_to = scratch_migrations(monkeypatch)

    result = workspace.refdata("check")

    assert f"since their common ancestor {ancestor}" in result.out, result.out + result.err
    assert ancestor not in migrated_to, "the history was replayed to reach the common ancestor"


def test_conflicting_heads_are_reported_row_by_row_and_never_merged(
    workspace: Workspace,
) -> None:
    cut, rise = make_heads(
        workspace,
        ("tracker cut", rate("tracker_mortgage", "4.49"), rate("tracker_mortgage", "4.74")),
        ("tracker rise", rate("tracker_mortgage", "4.99"), rate("tracker_mortgage", "4.74")),
    )
    files, lock = workspace.new_revision_files(), workspace.lock.read_text()

    result = workspace.refdata("merge", "-m", "merge the tracker changes")

    assert result.code == 1
    assert "no merge revision was written" in one_line(result.err)
    report = result.out
    assert "change the same fields of reference rows since their common ancestor" in report
    assert "  products tracker_mortgage\n" in report
    for head, value in ((cut, "4.49"), (rise, "4.99")):
        assert f"    head {head}, in revision {head} (" in report
        assert report.count(f"      interest_rate: 4.74 -> {value}\n") == 1
    assert workspace.new_revision_files() == files and workspace.lock.read_text() == lock


def test_heads_whose_order_matters_are_a_conflict_though_no_row_is_on_both(
    workspace: Workspace,
) -> None:
    heads = make_heads(
        workspace,
        (
            "mortgages up a quarter",
            "UPDATE products SET interest_rate = interest_rate + 0.25"
            " WHERE account_type_code = 'mortgage'",
            "UPDATE products SET interest_rate = interest_rate - 0.25"
            " WHERE account_type_code = 'mortgage'",
        ),
        (
            "a new mortgage",
            "INSERT INTO products (code, name, account_type_code, description, interest_rate,"
            " features, requirements) VALUES ('green_mortgage', 'Green Mortgage', 'mortgage',"
            " 'For homes rated A or B.', 4.10, '[]', '[]')",
            "DELETE FROM products WHERE code = 'green_mortgage'",
        ),
    )
    result = workspace.refdata("check")
    assert result.code == 1
    assert "change different reference rows, but give different rows depending" in result.out
    # Raised first, the new mortgage keeps 4.10; added first, it is raised to 4.35.
    value = dict(zip(heads, ("4.10", "4.35"), strict=True))
    first, second = sorted(heads)
    assert (
        f"(products green_mortgage: interest_rate {value[first]} with {first} first,"
        f" {value[second]} with {second} first)"
    ) in result.out


def rows_in_either_order(
    workspace: Workspace, pg_server: PgServer, template: str, heads: list[str]
) -> list[dict]:
    """The reference rows of a database at the heads' ancestor (``template``) that applied
    the heads in their order, and of one that applied them the other way round."""
    rows = []
    for order in (heads, heads[::-1]):
        with pg_server.database(template=template) as database:
            for head in order:
                command.upgrade(workspace.config(database), head)
            with database.connect() as conn:
                rows.append(read_rows(conn, reference_tables()))
    return rows


@pytest.mark.history
def test_disjoint_heads_give_the_same_rows_in_either_order_and_merge(
    workspace: Workspace, pg_server: PgServer, head_template: str
) -> None:
    ancestor = ScriptDirectory.from_config(workspace.config()).get_current_head()
    heads = make_heads(
        workspace,
        ("tracker cut", rate("tracker_mortgage", "4.49"), rate("tracker_mortgage", "4.74")),
        ("loan cut", rate("personal_loan", "5.90"), rate("personal_loan", "6.40")),
    )
    workspace.edit("products", "interest_rate: 4.74", "interest_rate: 4.49")
    workspace.edit("products", "interest_rate: 6.40", "interest_rate: 5.90")
    result = workspace.refdata("check")
    assert result.code == 1
    assert result.out.endswith(
        f"that change different reference rows or fields since their common ancestor"
        f" {ancestor}, and give the same rows in either order: safe to merge: run"
        " `refdata.py merge -m MSG`\n"
    )
    result = workspace.refdata("revision", "-m", "on which head?")
    assert result.code == 2 and "Run `refdata.py merge -m MSG`" in one_line(result.err)

    # What a database at their common ancestor sees: either head first, then the other.
    first, second = rows_in_either_order(workspace, pg_server, head_template, heads)
    assert first == second

    result = workspace.refdata("merge", "-m", "merge the tracker and loan cuts")

    assert result.code == 0, result.err
    merge = workspace.new_revision_files()[-1]
    assert f"wrote {merge}" in result.out and "recorded it in" in result.out
    merged = ScriptDirectory.from_config(workspace.config())
    assert merged.get_heads() == [merge.name.split("_")[4]]
    assert set(merged.get_revision("head").down_revision) == set(heads)
    assert imported_roots(merge) <= ALLOWED_IMPORT_ROOTS
    assert_ruff_clean(merge)
    assert workspace.refdata("check").code == 0
    result = workspace.refdata("merge", "-m", "again")
    assert result.code == 0 and result.out.startswith("nothing to merge: ")
    assert len(workspace.new_revision_files()) == 3


def test_revisions_two_heads_share_are_no_conflict_between_them() -> None:
    """Three heads: A and B forked from X, which forked from C's parent. A row only X
    touched is no conflict between A and B, but is one with C if C touched it too."""
    report = three_heads()
    report.changes = {
        "a": {
            ("products", k): changed("a", k, *by)
            for k, by in (("x_only", "x"), ("x_c", "x"), ("a_b", "a"))
        },
        "b": {
            ("products", k): changed("b", k, *by)
            for k, by in (("x_only", "x"), ("x_c", "x"), ("a_b", "b"))
        },
        "c": {("products", "x_c"): changed("c", "x_c", "c")},
    }
    assert [[(c.head, c.change.key) for c in row] for row in report.conflicts()] == [
        [("a", "a_b"), ("b", "a_b")],
        [("a", "x_c"), ("b", "x_c"), ("c", "x_c")],
    ]


def test_two_merges_at_once_write_one_merge_revision(workspace: Workspace) -> None:
    """The second merge waits for the first's writer lock, then reads the revision files
    again: it finds one head and writes nothing, instead of merging the old heads twice."""
    make_heads(
        workspace,
        ("tracker cut", rate("tracker_mortgage", "4.49"), rate("tracker_mortgage", "4.74")),
        ("loan cut", rate("personal_loan", "5.90"), rate("personal_loan", "6.40")),
    )
    workspace.edit("products", "interest_rate: 4.74", "interest_rate: 4.49")
    workspace.edit("products", "interest_rate: 6.40", "interest_rate: 5.90")

    outputs = two_at_once(workspace, "merge")

    assert outputs.count("wrote ") == 1 and outputs.count("nothing to merge") == 1, outputs
    assert len(ScriptDirectory.from_config(workspace.config()).get_heads()) == 1
