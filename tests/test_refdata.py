"""The reference-data toolkit: declared files, check, generated revisions, the lock.

Revisions are generated into a copy of ``alembic.ini`` + ``alembic/`` and of the declared
files under ``tmp_path``: the repository itself is never written.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from seed_data.db import REPO_ROOT
from seed_data.refdata import cli
from seed_data.refdata.declared import REFERENCE_DIR, DeclarationError, load_declared
from seed_data.refdata.lock import check_lock
from seed_data.refdata.state import read_rows
from seed_data.refdata.tables import reference_tables
from tests.helpers import alembic_env, snapshot_rows
from tests.servers import PgServer
from tests.test_project_rules import ALLOWED_IMPORT_ROOTS, imported_roots


@dataclass
class Workspace:
    """A copy of the migrations and the declared files that tests may change."""

    root: Path
    server: PgServer
    capsys: pytest.CaptureFixture[str]

    @property
    def ini(self) -> Path:
        return self.root / "alembic.ini"

    @property
    def reference(self) -> Path:
        return self.root / "reference"

    @property
    def versions(self) -> Path:
        return self.root / "alembic" / "versions"

    def config(self, engine: sa.Engine | None = None) -> Config:
        config = Config(str(self.ini))
        if engine is not None:
            config.attributes["connection"] = engine
        return config

    def edit(self, table: str, old: str, new: str) -> None:
        path = self.reference / f"{table}.yaml"
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {path.name}: the test's edit is out of date"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def refdata(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(
            [
                "--config",
                str(self.ini),
                "--reference-dir",
                str(self.reference),
                "--scratch-url",
                self.server.admin_url.render_as_string(hide_password=False),
                *args,
            ]
        )
        out, err = self.capsys.readouterr()
        return code, out, err

    def new_revision_files(self) -> list[Path]:
        known = {p.name for p in (REPO_ROOT / "alembic" / "versions").glob("*.py")}
        return sorted(p for p in self.versions.glob("*.py") if p.name not in known)


@pytest.fixture
def workspace(tmp_path: Path, pg_server: PgServer, capsys: pytest.CaptureFixture[str]) -> Workspace:
    shutil.copy(REPO_ROOT / "alembic.ini", tmp_path / "alembic.ini")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO_ROOT / "alembic", tmp_path / "alembic", ignore=ignore)
    shutil.copytree(REFERENCE_DIR, tmp_path / "reference")
    return Workspace(tmp_path, pg_server, capsys)


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
    "jsonb_lists": [
        (
            "products",
            "  - Open with £1\n",
            "  - Open with £1\n  - Round-ups from your current account\n",
        ),
        ("products", "  - Aged 16 or over and a UK resident\n", ""),
    ],
}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_generated_revision_round_trips_rows(
    workspace: Workspace, engine: sa.Engine, edit: str
) -> None:
    for table, old, new in EDITS[edit]:
        workspace.edit(table, old, new)
    command.upgrade(workspace.config(engine), "head")
    with engine.connect() as conn:
        before = snapshot_rows(conn)

    code, out, err = workspace.refdata("revision", "-m", f"test {edit}")

    assert code == 0, err
    (generated,) = workspace.new_revision_files()
    assert f"wrote {generated}" in out
    config = workspace.config(engine)
    command.upgrade(config, "head")
    with engine.connect() as conn:
        upgraded = snapshot_rows(conn)
        rows = read_rows(conn, reference_tables())
    assert rows == load_declared(workspace.reference), "head must now equal the declared files"
    command.downgrade(config, "-1")
    with engine.connect() as conn:
        assert snapshot_rows(conn) == before, "downgrade must restore every row exactly"
    command.upgrade(config, "head")
    with engine.connect() as conn:
        assert snapshot_rows(conn) == upgraded, "upgrading again must give the same rows"

    code, out, _ = workspace.refdata("check")
    if edit == "lookup_used_by_new_product":
        assert code == 1 and out.count("DRIFT:") == 1
        assert "AccountType does not match account_types.yaml: add ['business_current']" in out
    else:
        assert code == 0, out
        assert out.startswith("OK:")


def test_generated_revision_is_clean_code_and_renders_offline(workspace: Workspace) -> None:
    for table, old, new in EDITS["lookup_used_by_new_product"] + EDITS["jsonb_lists"]:
        workspace.edit(table, old, new)
    assert workspace.refdata("revision", "-m", "business banking")[0] == 0
    (generated,) = workspace.new_revision_files()

    assert imported_roots(generated) <= ALLOWED_IMPORT_ROOTS
    text = generated.read_text(encoding="utf-8")
    assert "seed_data" not in text
    for args in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args, str(generated)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert '"""Apply business banking."""' in text and '"""Unapply business banking."""' in text
    # Lookups go in before the product that uses them, and come out after it.
    upgrade = text[text.index("def upgrade") : text.index("def downgrade")]
    downgrade = text[text.index("def downgrade") :]
    assert upgrade.index("NEW_ACCOUNT_TYPES") < upgrade.index("NEW_PRODUCTS")
    assert downgrade.index("NEW_PRODUCTS") < downgrade.index("NEW_ACCOUNT_TYPES")

    buffer = io.StringIO()
    previous = ScriptDirectory.from_config(workspace.config()).get_revision("head").down_revision
    command.upgrade(Config(str(workspace.ini), output_buffer=buffer), f"{previous}:head", sql=True)
    sql = buffer.getvalue()
    assert "INSERT INTO products" in sql and "'[\"Free banking for 12 months\"]'::jsonb" in sql


def test_nothing_to_change_writes_no_file(workspace: Workspace) -> None:
    code, out, _ = workspace.refdata("revision", "-m", "no-op")
    assert code == 0
    assert "nothing to change" in out
    assert workspace.new_revision_files() == []


def test_check_reports_declared_files_that_drifted_from_head(workspace: Workspace) -> None:
    workspace.edit("products", "interest_rate: 4.74", "interest_rate: 4.49")
    workspace.edit("faqs", "- slug: mobile-app", "- slug: mobile-app-2")
    code, out, _ = workspace.refdata("check")
    assert code == 1
    assert "faqs: 1 to add, 1 to remove, 0 to change" in out
    assert "  + mobile-app-2:" in out and "  - mobile-app\n" in out
    assert "  ~ tracker_mortgage\n      interest_rate: Decimal('4.74') -> Decimal('4.49')" in out
    assert "refdata.py revision" in out


def test_check_live_finds_out_of_band_edits_without_writing(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", head_engine.url.render_as_string(hide_password=False))
    assert workspace.refdata("check", "--live")[0] == 0

    with head_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE products SET interest_rate = 9.99 WHERE code = 'personal_loan'")
        )
        conn.execute(sa.text("INSERT INTO message_roles VALUES ('bot', 'Bot', 99)"))
        before = snapshot_rows(conn)
    code, out, _ = workspace.refdata("check", "--live")

    assert code == 1
    assert "edited outside the migrations" in out
    assert "  ~ personal_loan\n      interest_rate: Decimal('6.40') -> Decimal('9.99')" in out
    assert "message_roles: 1 to add, 0 to remove, 0 to change (head -> live)" in out
    with head_engine.connect() as conn:
        assert snapshot_rows(conn) == before, "--live must never write"


def test_check_live_reports_a_database_behind_head(
    workspace: Workspace, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    behind = ScriptDirectory.from_config(workspace.config()).get_revision("head").down_revision
    command.upgrade(workspace.config(engine), behind)
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    code, out, _ = workspace.refdata("check", "--live")
    assert code == 1
    assert f"is at {behind}, head is" in out and "run `alembic upgrade head` there" in out


def test_edited_and_unrecorded_revision_files_fail_check_until_resolved(
    workspace: Workspace,
) -> None:
    frozen = sorted(workspace.versions.glob("*lookup_values.py"))[0]
    frozen.write_text(frozen.read_text() + "\n# a harmless-looking edit\n")
    command.revision(workspace.config(), message="hand written")
    (unrecorded,) = workspace.new_revision_files()

    code, out, _ = workspace.refdata("check")
    assert code == 1
    assert f"{frozen.name} was edited after it was recorded" in out and "revert the edit" in out
    assert f"{unrecorded.name} is not recorded" in out and "refdata.py lock" in out
    code, _, err = workspace.refdata("revision", "-m", "blocked")
    assert code == 2 and "fix the revision lock first" in err

    assert workspace.refdata("lock")[1] == f"recorded {unrecorded.name}\n"
    assert workspace.refdata("lock", "--rehash", frozen.name)[1] == f"recorded {frozen.name}\n"
    assert workspace.refdata("check")[0] == 0


def test_repository_revisions_are_all_locked() -> None:
    problems = check_lock(REPO_ROOT / "alembic").problems()
    assert not problems, "\n".join(problems)


BAD_DECLARATIONS = {
    "duplicate key": (
        "account_types",
        "- {code: savings,",
        "- {code: current_account, label: Again, sort_order: 15}\n- {code: savings,",
        "account_types.yaml:9: duplicate code 'current_account' (first declared on line 8)",
    ),
    "unknown column": (
        "message_roles",
        "- {code: agent, label: Agent,",
        "- {code: agent, colour: blue, label: Agent,",
        "message_roles.yaml:9: unknown column colour for message_roles",
    ),
    "wrong type": (
        "transaction_categories",
        "sort_order: 10}",
        "sort_order: ten}",
        "transaction_categories.yaml:8: sort_order: expected a whole number, got 'ten'",
    ),
    "too many decimal places": (
        "products",
        "interest_rate: 4.74",
        "interest_rate: 4.745",
        "interest_rate: 4.745 has more than 2 decimal places",
    ),
    "missing column": (
        "conversation_channels",
        "- {code: phone, label: Phone, sort_order: 30}",
        "- {code: phone, label: Phone}",
        "conversation_channels.yaml:10: missing column sort_order",
    ),
    "missing lookup value": (
        "products",
        "account_type_code: personal_loan",
        "account_type_code: car_finance",
        "account_type_code 'car_finance' is not declared in account_types.yaml",
    ),
    "malformed YAML": (
        "faqs",
        "- slug: contacting-us",
        "- slug: [contacting-us",
        "faqs.yaml: not valid YAML",
    ),
}


@pytest.mark.parametrize("case", BAD_DECLARATIONS, ids=list(BAD_DECLARATIONS))
def test_bad_declarations_are_refused_with_file_and_line(workspace: Workspace, case: str) -> None:
    table, old, new, message = BAD_DECLARATIONS[case]
    workspace.edit(table, old, new)
    with pytest.raises(DeclarationError) as raised:
        load_declared(workspace.reference)
    assert any(message in problem for problem in raised.value.problems), raised.value.problems

    workspace.server = PgServer("unreachable", workspace.server.admin_url.set(port=1), Path())
    code, _, err = workspace.refdata("revision", "-m", "never written")
    assert code == 2, "bad declarations are refused before any database is touched"
    assert message in err
    assert workspace.new_revision_files() == []


def test_missing_and_stray_files_are_named(workspace: Workspace) -> None:
    (workspace.reference / "faqs.yaml").unlink()
    (workspace.reference / "product.yaml").write_text("[]\n")
    with pytest.raises(DeclarationError) as raised:
        load_declared(workspace.reference)
    text = str(raised.value)
    assert "faqs.yaml: cannot read the file" in text
    assert "product.yaml: not a reference table" in text


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
    assert result.stdout.startswith("OK: 7 reference tables agree with head")
