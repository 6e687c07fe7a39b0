"""demo data set record: the parameters the demo data in this database was generated with

Revision ID: 005fc96c69b8
Revises: e76ed0cf054b
Create Date: 2026-11-27 15:44:42.020481

``scripts/load_fixtures.py`` generates demo customers deterministically from a seed, an
as-of date, its source material, the products on sale and the generator's own version. A
rerun loads only the customers that are missing, so it must know what made the ones that
are there: otherwise two data sets mix. This single-row table records those parameters
when the loader writes, and the loader refuses a rerun whose parameters differ.

The record describes demo rows that no downgrade removes, so no downgrade removes it
either: this revision's downgrade keeps the table and its row, and its upgrade keeps a
table an earlier downgrade left. Only ``alembic -x teardown=yes downgrade base`` drops it.
Rewritten in place after release (README, "Revisions rewritten in place"): the first text
dropped the table in its downgrade, so the documented rollback lost the record of the
demo data still loaded. The lock keeps the first text's digest as an earlier text.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "005fc96c69b8"
down_revision: str | Sequence[str] | None = "e76ed0cf054b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply demo data set record (a table an earlier downgrade kept stays, with its row)."""
    op.create_table(
        "demo_data_set",
        sa.Column(
            "id",
            sa.SmallInteger(),
            server_default=sa.text("1"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("catalogue_sha256", sa.String(length=64), nullable=False),
        sa.Column("generator_version", sa.Integer(), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_demo_data_set_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_demo_data_set")),
        if_not_exists=True,
    )


def downgrade() -> None:
    """Unapply demo data set record: kept, unless this is the teardown."""
    if not op.get_context().opts.get("teardown"):
        return  # the demo rows it describes stay too
    op.drop_table("demo_data_set")
