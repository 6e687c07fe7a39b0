"""The reference-data toolkit: generated revisions for every kind of edit, check, the lock.

Revisions are generated into a copy of ``alembic.ini`` + ``alembic/`` and of the declared
files under ``tmp_path`` (tests/refdata_support.py): the repository itself is never written.
"""

from __future__ import annotations

import io
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from seed_data import alembic_runs
from seed_data.db import REPO_ROOT
from seed_data.refdata.declared import load_declared
from seed_data.refdata.lock import check_lock, file_checksum, read_lock
from seed_data.refdata.state import read_rows
from seed_data.refdata.tables import reference_tables
from tests.helpers import (
    alembic_env,
    apply_with_psql,
    history_rows,
    history_steps,
    snapshot_rows,
)
from tests.refdata_support import Workspace, aim_database_url, assert_ruff_clean
from tests.servers import PgServer
from tests.test_project_rules import ALLOWED_IMPORT_ROOTS, imported_roots

SAVER_FEATURES = (
    "  - 3.50% AER / 3.44% gross variable\n  - Unlimited withdrawals with no notice or penalty\n"
)
SPECIAL_ANSWER = (
    "  answer: |-\n"
    '    It\'s "free": 100% of £1 — no fee; C:\\Users\\me; $$ -- ; :name \\N; café €5\n'
    "    Ask about it\N{NO-BREAK SPACE}today \N{RIGHT SINGLE QUOTATION MARK}s offer \N{GRINNING FACE}\n"
)

# Edits a team makes to the declared files, each of which needs a data migration.
EDITS = {
    "adds": [
        (
            "faqs",
            "- slug: mobile-app",
            "- slug: savings-goals\n  question: Can I set a savings goal?\n"
            "  answer: 'Yes: open a saver, tap Goals and choose an amount and a date.'\n"
            "  category: saving\n  sort_order: 70\n  is_active: true\n\n- slug: mobile-app",
        )
    ],
    "removals": [("faqs", "- slug: mobile-app", "- slug: mobile-app-retired")],
    "field_changes": [
        ("products", "interest_rate: 4.74", "interest_rate: 4.49"),
        ("faqs", "question: How can I contact the bank?", "question: How do I contact you?"),
    ],
    "lookup_used_by_new_product": [
        (
            "account_types",
            "- {code: mortgage",
            "- {code: business_current, label: Business current account, sort_order: 35}\n- {code: mortgage",
        ),
        (
            "products",
            "- code: easy_access_saver",
            "- code: business_current\n  name: Business Current Account\n"
            "  account_type_code: business_current\n  description: For sole traders.\n"
            "  interest_rate: 0.00\n  features: [Free banking for 12 months]\n"
            "  requirements: [A UK business address]\n  is_active: true\n\n"
            "- code: easy_access_saver",
        ),
    ],
    "jsonb_lists_edited_and_reordered": [
        (
            "products",
            "  - Open with £1\n",
            "  - Open with £1\n  - Round-ups from your current account\n",
        ),
        ("products", "  - Aged 16 or over and a UK resident\n", ""),
        ("products", SAVER_FEATURES, "".join(reversed(SAVER_FEATURES.splitlines(True)))),
    ],
    # The example: the new row (same name) used to go in before the old one left.
    # Swapping two names needs both parked first, in both directions.
    "unique_values_move_between_rows": [
        ("products", "- code: tracker_mortgage", "- code: tracker_mortgage_v2"),
        ("products", "name: Easy Access Saver", "name: Easy Access Cash ISA (was saver)"),
        ("products", "name: Easy Access Cash ISA\n", "name: Easy Access Saver\n"),
        ("products", "name: Easy Access Cash ISA (was saver)", "name: Easy Access Cash ISA"),
        ("products", "name: 2 Year Fixed Mortgage (75% LTV)", "name: Lifetime Tracker Mortgage 2"),
    ],
    # A product moves to a new lookup value that replaces the old one, in one revision.
    "rows_move_between_lookups": [
        (
            "account_types",
            "- {code: personal_loan, label: Personal loan, sort_order: 50}",
            "- {code: unsecured_loan, label: Unsecured loan, sort_order: 50}",
        ),
        ("products", "account_type_code: personal_loan", "account_type_code: unsecured_loan"),
        ("faqs", "category: digital", "category: app"),
    ],
    "characters_sql_python_and_yaml_treat_specially": [
        (
            "faqs",
            "  answer: In the app you can check balances, make payments, set up standing orders, freeze\n    and unfreeze your card, see your PIN, manage spending by category and chat to us. Download\n    it from the App Store or Google Play and log in with your customer ID and the passcode\n    you set during registration.\n",
            SPECIAL_ANSWER,
        ),
        (
            "products",
            "  - No arrangement fee\n",
            "  - 'No \"arrangement\" fee: 0% \\\\ it''s £0'\n",
        ),
        ("products", "name: Personal Loan", 'name: "Personal Loan \\u2013 \\"fixed\\""'),
    ],
}


def apply_generated_revision(workspace: Workspace, engine: sa.Engine) -> tuple[Path, dict]:
    """Upgrade ``engine`` (at the previous head) with the new revision, down and up again.

    Rows are compared without migration_history, which each step appends to: it must end
    with one row per step, each with the generated file's checksum.
    """
    script = ScriptDirectory.from_config(workspace.config())
    head = script.get_revision("head")
    assert head is not None and head.path is not None
    generated = Path(head.path)
    assert generated in workspace.new_revision_files(), "head must be the generated revision"
    assert read_lock(workspace.root / "alembic")[generated.name], "not recorded in the lock"
    config = workspace.config(engine)
    with engine.connect() as conn:
        before, history_before = snapshot_rows(conn, history=False), len(history_steps(conn))
    alembic_runs.upgrade(config, "head", script=script)
    with engine.connect() as conn:
        upgraded = snapshot_rows(conn, history=False)
        rows = read_rows(conn, reference_tables())
    assert rows == load_declared(workspace.reference), "head must now equal the declared files"
    alembic_runs.downgrade(config, "-1", script=script)
    with engine.connect() as conn:
        assert snapshot_rows(conn, history=False) == before, "downgrade must restore every row"
    alembic_runs.upgrade(config, "head", script=script)
    with engine.connect() as conn:
        assert snapshot_rows(conn, history=False) == upgraded, (
            "upgrading again must give the same rows"
        )
        history = history_rows(conn)[history_before:]
    revision = generated.name.split("_")[4]
    assert [(r["revision"], r["direction"], r["checksum"]) for r in history] == [
        (revision, direction, file_checksum(generated))
        for direction in ("upgrade", "downgrade", "upgrade")
    ]
    return generated, upgraded


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_generated_revision_round_trips_rows(
    workspace: Workspace, head_engine: sa.Engine, edit: str
) -> None:
    for table, old, new in EDITS[edit]:
        workspace.edit(table, old, new)

    result = workspace.refdata("revision", "-m", f"test {edit}")

    assert result.code == 0, result.err
    generated, _ = apply_generated_revision(workspace, head_engine)
    assert f"wrote {generated}" in result.out and "proved on a scratch database" in result.out
    assert imported_roots(generated) <= ALLOWED_IMPORT_ROOTS
    assert_ruff_clean(generated)


def test_check_agrees_after_a_revision_and_names_the_enum_to_update(workspace: Workspace) -> None:
    for table, old, new in EDITS["rows_move_between_lookups"]:
        workspace.edit(table, old, new)
    assert workspace.refdata("revision", "-m", "unsecured loans").code == 0

    result = workspace.refdata("check")

    assert result.code == 1 and result.out.count("DRIFT:") == 1, result.out
    assert (
        "AccountType does not match account_types.yaml: add ['unsecured_loan'], "
        "remove ['personal_loan']" in result.out
    )


def test_generated_revision_is_clean_code_and_renders_offline(
    workspace: Workspace, pg_server: PgServer, head_engine: sa.Engine, other_head_engine: sa.Engine
) -> None:
    edits = [
        *EDITS["lookup_used_by_new_product"],
        *EDITS["unique_values_move_between_rows"],
        *EDITS["characters_sql_python_and_yaml_treat_specially"],
    ]
    for table, old, new in edits:
        workspace.edit(table, old, new)
    message = '"""business""" banking \\ 2027 \u2013 "go"'
    assert workspace.refdata("revision", "-m", message).code == 0
    (generated,) = workspace.new_revision_files()

    text = generated.read_text(encoding="utf-8")
    assert "seed_data" not in text
    assert '"""Apply \\"\\"\\"business\\"\\"\\" banking \\\\ 2027 \\N{EN DASH} "go"."""' in text
    module = runpy.run_path(str(generated))  # it imports, and its docstrings say the message
    assert module["upgrade"].__doc__ == f"Apply {message}."
    assert module["__doc__"].startswith(f"{message}\n\nRevision ID: ")
    # Lookups go in before the product that uses them, and come out after it; rows whose
    # unique name another row takes are parked before anything else happens.
    upgrade = text[text.index("def upgrade") : text.index("def downgrade")]
    downgrade = text[text.index("def downgrade") : text.index("def _update")]
    assert upgrade.index("PARKED_PRODUCTS") < upgrade.index("NEW_ACCOUNT_TYPES")
    assert upgrade.index("NEW_ACCOUNT_TYPES") < upgrade.index("NEW_PRODUCTS")
    assert downgrade.index("PARKED_PRODUCTS") < downgrade.index("NEW_PRODUCTS")
    assert downgrade.index("NEW_PRODUCTS") < downgrade.index("NEW_ACCOUNT_TYPES")

    # What a DBA would do: the --sql script, applied with psql, equals the online upgrade.
    buffer = io.StringIO()
    previous = ScriptDirectory.from_config(workspace.config()).get_revision("head").down_revision
    command.upgrade(Config(str(workspace.ini), output_buffer=buffer), f"{previous}:head", sql=True)
    script = workspace.root / "upgrade.sql"
    script.write_text(buffer.getvalue(), encoding="utf-8")
    command.upgrade(workspace.config(other_head_engine), previous)
    apply_with_psql(pg_server.bin_dir, other_head_engine, script)
    command.upgrade(workspace.config(head_engine), "head")
    with other_head_engine.connect() as offline, head_engine.connect() as online:
        assert snapshot_rows(offline, history=False) == snapshot_rows(online, history=False)
        # The same steps recorded, each with the same checksum; only how they ran differs.
        assert [(r["revision"], r["checksum"]) for r in history_rows(offline)] == [
            (r["revision"], r["checksum"]) for r in history_rows(online)
        ]


def test_nothing_to_change_writes_no_file(workspace: Workspace) -> None:
    result = workspace.refdata("revision", "-m", "no-op")
    assert result.code == 0
    assert "nothing to change" in result.out
    assert workspace.untouched()


def test_check_reports_declared_files_that_drifted_from_head(workspace: Workspace) -> None:
    workspace.edit("products", "interest_rate: 4.74", "interest_rate: 4.49")
    workspace.edit("faqs", "- slug: mobile-app", "- slug: mobile-app-2")
    result = workspace.refdata("check")
    assert result.code == 1
    assert "faqs: 1 to add, 1 to remove, 0 to change" in result.out
    assert "  + mobile-app-2:" in result.out and "  - mobile-app\n" in result.out
    assert (
        "  ~ tracker_mortgage\n      interest_rate: Decimal('4.74') -> Decimal('4.49')"
        in result.out
    )
    assert "refdata.py revision" in result.out


def test_a_reordered_jsonb_list_is_drift_in_the_files_and_in_a_live_database(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace.edit("products", SAVER_FEATURES, "".join(reversed(SAVER_FEATURES.splitlines(True))))
    result = workspace.refdata("check")
    assert result.code == 1, result.out
    assert "  ~ easy_access_saver\n      features: ['3.50% AER" in result.out

    workspace.edit("products", "".join(reversed(SAVER_FEATURES.splitlines(True))), SAVER_FEATURES)
    with head_engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE products SET features = (SELECT jsonb_agg(f ORDER BY n DESC) "
                "FROM jsonb_array_elements(features) WITH ORDINALITY AS e (f, n)) "
                "WHERE code = 'easy_access_saver'"
            )
        )
    aim_database_url(monkeypatch, head_engine)
    result = workspace.refdata("check", "--live")
    assert result.code == 1, result.out
    assert "products: 0 to add, 0 to remove, 1 to change (head -> live)" in result.out
    assert "  ~ easy_access_saver\n      features:" in result.out


def test_check_live_finds_out_of_band_edits_without_writing(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    aim_database_url(monkeypatch, head_engine)
    assert workspace.refdata("check", "--live").code == 0

    with head_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE products SET interest_rate = 9.99 WHERE code = 'personal_loan'")
        )
        conn.execute(sa.text("INSERT INTO message_roles VALUES ('bot', 'Bot', 99)"))
        before = snapshot_rows(conn)
    result = workspace.refdata("check", "--live")

    assert result.code == 1
    assert "edited outside the migrations" in result.out
    assert (
        "  ~ personal_loan\n      interest_rate: Decimal('6.40') -> Decimal('9.99')" in result.out
    )
    assert "message_roles: 1 to add, 0 to remove, 0 to change (head -> live)" in result.out
    with head_engine.connect() as conn:
        assert snapshot_rows(conn) == before, "--live must never write"


def test_check_live_reports_a_database_behind_head(
    workspace: Workspace, behind_head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    behind = ScriptDirectory.from_config(workspace.config()).get_revision("head").down_revision
    aim_database_url(monkeypatch, behind_head_engine)
    result = workspace.refdata("check", "--live")
    assert result.code == 1
    assert f"is at {behind}, head is" in result.out
    assert "run `alembic upgrade head` there" in result.out


def test_edited_and_unrecorded_revision_files_fail_check_until_resolved(
    workspace: Workspace,
) -> None:
    frozen = sorted(workspace.versions.glob("*lookup_values.py"))[0]
    frozen.write_text(frozen.read_text() + "\n# a harmless-looking edit\n")
    command.revision(workspace.config(), message="hand written")
    (unrecorded,) = workspace.new_revision_files()

    result = workspace.refdata("check")
    assert result.code == 1
    assert f"{frozen.name} was edited after it was recorded" in result.out
    assert "revert the edit" in result.out
    assert f"{unrecorded.name} is not recorded" in result.out and "refdata.py lock" in result.out
    result = workspace.refdata("revision", "-m", "blocked")
    assert result.code == 2 and "fix the revision lock first" in result.err

    assert workspace.refdata("lock").out == f"recorded {unrecorded.name}\n"
    # A path works where a file name does.
    relative = frozen.relative_to(Path.cwd()) if frozen.is_relative_to(Path.cwd()) else frozen
    assert workspace.refdata("lock", "--rehash", str(relative)).out == f"recorded {frozen.name}\n"
    assert workspace.refdata("check").code == 0


def test_repository_revisions_are_all_locked() -> None:
    problems = check_lock(REPO_ROOT / "alembic").problems()
    assert not problems, "\n".join(problems)


@pytest.mark.history
def test_check_script_passes_on_the_repository(pg_server: PgServer) -> None:
    """What CI runs: the real script against a real server, from a clean environment."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "refdata.py"), "check"],
        cwd=REPO_ROOT,
        env=alembic_env(pg_server.admin_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        "seed_data/reference/*.yaml, the migrations or the lock disagree; run "
        f"`scripts/refdata.py check` for details:\n{result.stdout}{result.stderr}"
    )
    assert result.stdout.startswith(f"OK: {len(reference_tables())} reference tables agree")
    assert result.stderr == "", "check must not chatter (alembic INFO lines) on stderr"
