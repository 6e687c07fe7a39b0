"""The reference toolkit's judgements at their edges: a row that two heads' shared revision
changed is no conflict between them, one refused lookup row is one problem (not one more
for every row that uses it), and a revision whose ``--sql`` downgrade fails is never
written. Revisions are made in a copy of the migrations, on whatever head it has."""

from __future__ import annotations

from pathlib import Path

from seed_data.migration_history import DOWNGRADE, HISTORY_TABLE, SQL_SCRIPT
from seed_data.refdata.branches import HeadChange, HeadsReport
from seed_data.refdata.replay import RowChange
from tests.refdata_support import Workspace
from tests.test_refdata_failures import one_line


def three_heads() -> HeadsReport:
    """Heads a and b built on x, which forked from base; c forked from base too."""
    lineages = {"a": {"base", "x", "a"}, "b": {"base", "x", "b"}, "c": {"base", "c"}}
    return HeadsReport("base", ["a", "b", "c"], lineages)


def changed(head: str, key: str, *by: str) -> HeadChange:
    """What ``head`` did to a product's rate, the field touched by the revisions ``by``."""
    change = RowChange("products", key, {"interest_rate": 1}, {"interest_rate": 2})
    touched = {"interest_rate": frozenset(by)}
    return HeadChange(head, None, change, touched)  # type: ignore[arg-type]


def test_a_row_changed_in_a_revision_two_heads_share_is_no_conflict_between_them() -> None:
    """x forks from the common ancestor; heads a and b build on x, c on the ancestor. The
    tracker's rate is set by x (which a and b both have) and again by b: whichever head a
    database applies first, it ends with b's rate, so nothing conflicts. (Replaying three
    real heads costs seconds per server; the replay itself is tested with two.)"""
    report = three_heads()
    tracker = ("products", "tracker_mortgage")
    loan = ("products", "personal_loan")
    card = ("products", "rewards_credit_card")
    report.changes = {
        "a": {tracker: changed("a", tracker[1], "x"), loan: changed("a", loan[1], "a")},
        "b": {tracker: changed("b", tracker[1], "x", "b")},
        "c": {card: changed("c", card[1], "c")},
    }

    assert report.conflicts() == []
    assert report.safe
    (said,) = report.problems(Path("alembic/versions"))
    assert said.endswith(
        "give the same rows in either order: safe to merge: run `refdata.py merge -m MSG`"
    )


def test_a_refused_lookup_row_is_one_problem_not_one_per_row_using_it(
    workspace: Workspace,
) -> None:
    workspace.add_revision(
        "short account type labels",
        "ALTER TABLE account_types ADD CONSTRAINT ck_account_types_label_short"
        " CHECK (length(label) <= 16)",
        "ALTER TABLE account_types DROP CONSTRAINT ck_account_types_label_short",
    )
    old = "{code: mortgage, label: Mortgage, sort_order: 40}"
    workspace.edit(
        "account_types", old, "{code: mortgage, label: Repayment mortgage, sort_order: 40}"
    )
    products = (workspace.reference / "products.yaml").read_text(encoding="utf-8")
    assert products.count("account_type_code: mortgage") >= 2, "the test needs rows using it"

    result = workspace.refdata("check")

    assert result.code == 2, result.out + result.err
    problems = [line for line in result.err.splitlines() if line.startswith("  ")]
    assert len(problems) == 1, "\n".join(problems)
    assert "account_types.yaml:" in problems[0]
    assert "breaks ck_account_types_label_short" in problems[0]


def test_a_revision_whose_sql_downgrade_fails_is_never_written(workspace: Workspace) -> None:
    # Online steps and the --sql upgrade go through; only an offline downgrade is refused.
    workspace.add_revision(
        "no offline downgrades here",
        "CREATE FUNCTION no_offline_downgrade() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " RAISE EXCEPTION 'offline downgrades are refused here'; END $$; CREATE TRIGGER"
        f" no_offline_downgrade BEFORE INSERT ON {HISTORY_TABLE} FOR EACH ROW WHEN"
        f" (NEW.direction = '{DOWNGRADE}' AND NEW.method = '{SQL_SCRIPT}')"
        " EXECUTE FUNCTION no_offline_downgrade()",
        f"DROP TRIGGER no_offline_downgrade ON {HISTORY_TABLE};"
        " DROP FUNCTION no_offline_downgrade()",
    )
    versions_before = sorted(workspace.versions.glob("*.py"))
    lock_before = workspace.lock.read_text(encoding="utf-8")
    workspace.edit("products", "interest_rate: 4.74", "interest_rate: 4.49")

    result = workspace.refdata("revision", "-m", "tracker cut")

    assert result.code == 2, result.out + result.err
    line = one_line(result.err)
    assert "fails on the scratch database (downgrade --sql)" in line
    assert "offline downgrades are refused here" in line
    assert line.endswith("nothing was written or recorded")
    assert sorted(workspace.versions.glob("*.py")) == versions_before
    assert workspace.lock.read_text(encoding="utf-8") == lock_before
