"""A new reference table, the way docs/reference-data.md says to add one, in a copy of the
project: the model (marked ``ReferenceData``), its schema revision, its declared rows, the
generated data revision; upgrade, downgrade and upgrade again; ``check`` OK. And the one
line each step gives when a step before it was missed."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from seed_data.models import REFERENCE_TABLES
from tests.project_copy import ProjectCopy
from tests.refdata_support import Workspace
from tests.servers import PgServer

MODEL = '''

class CardNetwork(ReferenceData, Base):
    """A card scheme the bank's cards run on."""

    __tablename__ = "card_networks"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    sort_order: Mapped[int]
'''

CREATE_TABLE = """
    op.create_table(
        "card_networks",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_card_networks")),
        sa.UniqueConstraint("name", name=op.f("uq_card_networks_name")),
    )
"""
DROP_TABLE = """    op.drop_table("card_networks")"""

ROWS = """- {code: visa, name: Visa, sort_order: 10}
- {code: mastercard, name: Mastercard, sort_order: 20}
- {code: amex, name: American Express, sort_order: 30}
"""


@pytest.fixture
def project(tmp_path: Path, pg_server: PgServer) -> ProjectCopy:
    return ProjectCopy(tmp_path, pg_server.admin_url.render_as_string(hide_password=False))


def test_a_new_reference_table_goes_from_model_to_migrated_rows(
    project: ProjectCopy, head_engine: sa.Engine
) -> None:
    """From the model to rows in a database at the head before it, as a deploy finds it."""
    project.add_model(MODEL)
    (project.reference / "card_networks.yaml").write_text(ROWS)

    # Declared before its schema revision exists: one line says what to write first.
    early = project.refdata("revision", "-m", "card networks")
    assert early.returncode == 2, early.stdout + early.stderr
    assert early.stderr == (
        "error: card_networks is marked as reference data in seed_data/models.py, but the "
        "migrations' head has no such table: write the schema revision that creates it first "
        "(`alembic revision -m ...`, see docs/schema-revisions.md), then run this again\n"
    )

    project.add_schema_revision("card networks table", CREATE_TABLE, DROP_TABLE)
    assert project.refdata("check").returncode == 1, "the table is at head, its rows are not"

    written = project.refdata("revision", "-m", "card networks")

    assert written.returncode == 0, written.stderr
    assert "card_networks: 3 to add, 0 to remove, 0 to change" in written.stdout
    for step in (("upgrade", "head"), ("downgrade", "-1"), ("upgrade", "head")):
        done = project.alembic(*step, url=head_engine.url)
        assert done.returncode == 0, done.stdout + done.stderr
    with head_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT code, name, sort_order FROM card_networks ORDER BY 3"))
        assert [tuple(r) for r in rows] == [
            ("visa", "Visa", 10),
            ("mastercard", "Mastercard", 20),
            ("amex", "American Express", 30),
        ]
    checked = project.refdata("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tables = len(REFERENCE_TABLES) + 1
    assert checked.stdout.startswith(f"OK: {tables} reference tables agree with head")


def test_a_model_keyed_by_a_number_is_refused_with_what_to_change(project: ProjectCopy) -> None:
    project.add_model(
        MODEL.replace(
            "code: Mapped[str] = mapped_column(String(32), primary_key=True)",
            "code: Mapped[int] = mapped_column(primary_key=True)",
        )
    )

    result = project.refdata("check")

    assert result.returncode == 2
    assert result.stderr == (
        "error: seed_data/models.py: card_networks is marked as reference data, but its "
        "primary key is (code INTEGER): a reference table is keyed by one text column, its "
        "natural key (code, slug); see docs/reference-data.md#adding-a-reference-table\n"
    )


def test_a_declared_file_for_a_table_that_is_not_reference_data_says_what_to_add_where(
    files_workspace: Workspace,
) -> None:
    (files_workspace.reference / "card_networks.yaml").write_text(ROWS)
    (files_workspace.reference / "customers.yaml").write_text("[]\n")

    result = files_workspace.refdata("check")

    assert result.code == 2
    assert result.err.splitlines()[1:] == [
        f"  {files_workspace.reference}/card_networks.yaml:1: no model has __tablename__ = "
        "'card_networks': add one to seed_data/models.py, marked as reference data (class "
        "...(ReferenceData, Base)), and a schema revision that creates the table; see "
        "docs/reference-data.md#adding-a-reference-table",
        f"  {files_workspace.reference}/customers.yaml:1: customers is not marked as reference "
        "data: in seed_data/models.py, add ReferenceData to the bases of Customer (class "
        "Customer(ReferenceData, Base)); see docs/reference-data.md#adding-a-reference-table",
    ]


def test_a_column_the_model_has_but_head_lacks_asks_for_its_schema_revision(
    project: ProjectCopy,
) -> None:
    project.add_model(MODEL)
    (project.reference / "card_networks.yaml").write_text(ROWS)
    project.add_schema_revision("card networks table", CREATE_TABLE, DROP_TABLE)
    models = project.root / "seed_data" / "models.py"
    text = models.read_text(encoding="utf-8")
    last = "    sort_order: Mapped[int]\n\n\n# --- Business data"
    assert last in text, "the model's last column moved: update this test"
    added = "    sort_order: Mapped[int]\n    colour: Mapped[str | None]\n\n\n# --- Business data"
    models.write_text(text.replace(last, added))
    coloured = ROWS.replace("}", ", colour: blue}")
    (project.reference / "card_networks.yaml").write_text(coloured)

    result = project.refdata("revision", "-m", "card networks")

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        "error: card_networks has column colour in seed_data/models.py, but not at the "
        "migrations' head: write the schema revision that adds it first (see "
        "docs/schema-revisions.md), then run this again\n"
    )
