"""history outcomes: partly applied steps, overrides, lost records, gapless ids

Revision ID: 36b2ca9f2eb5
Revises: c4b3243c2cdb
Create Date: 2026-12-06 09:24:54.512305

migration_history gains what its first version could not say (see docs/reference-data.md,
"Applied history"):

* ``outcome``: ``applied`` (the step committed: every earlier row), ``partly_applied`` (the
  step failed after committing part of its work, such as backfill batches, so
  alembic_version did not move), or ``record_lost`` (``scripts/repair_history.py`` marks
  an applied revision whose record was lost; such a row is ``not_recorded`` too);
* ``note``: the words behind a row: the emergency override a step ran under, the error a
  partly applied step ended with, what a repair found lost;
* ids without gaps: each row takes the next id under a lock held to its commit, so a
  rolled-back step, a crash or a failover leaves none, and a gap means rows were deleted.

Like the table, none of it goes with a downgrade (the rows it describes stay): this
revision's downgrade keeps it, and its upgrade keeps what an earlier downgrade left. Only
``alembic -x teardown=yes downgrade base`` removes it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "36b2ca9f2eb5"
down_revision: str | Sequence[str] | None = "c4b3243c2cdb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = """
outcome IN ('applied', 'partly_applied', 'record_lost')
AND (outcome <> 'record_lost' OR method = 'not_recorded')
AND (outcome <> 'partly_applied' OR method <> 'not_recorded')
"""

# Writers take turns from their first row to their commit (a transaction-level advisory
# lock keyed by the table), and each row takes the id after the last committed one.
NEXT_ID_FUNCTION = """
CREATE OR REPLACE FUNCTION migration_history_next_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock('migration_history'::regclass::oid::bigint);
    NEW.id := coalesce((SELECT max(id) FROM migration_history), 0) + 1;
    RETURN NEW;
END
$$
"""
NEXT_ID_TRIGGER = (
    "CREATE OR REPLACE TRIGGER migration_history_next_id BEFORE INSERT ON migration_history"
    " FOR EACH ROW EXECUTE FUNCTION migration_history_next_id()"
)


def upgrade() -> None:
    """Apply history outcomes, notes and gapless ids (kept if an earlier downgrade left them)."""
    op.add_column(
        "migration_history",
        sa.Column("outcome", sa.Text(), server_default="applied", nullable=False),
        if_not_exists=True,
    )
    op.add_column("migration_history", sa.Column("note", sa.Text()), if_not_exists=True)
    # A small table that only migrations write: the check's scan takes no time.
    op.execute(
        "ALTER TABLE migration_history"
        " DROP CONSTRAINT IF EXISTS ck_migration_history_outcome,"
        f" ADD CONSTRAINT ck_migration_history_outcome CHECK ({OUTCOMES})"
    )
    op.execute(NEXT_ID_FUNCTION)
    op.execute(NEXT_ID_TRIGGER)


def downgrade() -> None:
    """Unapply history outcomes, notes and gapless ids: kept, unless this is the teardown."""
    if not op.get_context().opts.get("teardown"):
        return  # the rows they describe stay, and env.py goes on writing to them
    op.execute("DROP TRIGGER migration_history_next_id ON migration_history")
    op.execute("DROP FUNCTION migration_history_next_id()")
    op.drop_constraint(op.f("ck_migration_history_outcome"), "migration_history", type_="check")
    op.drop_column("migration_history", "note")
    op.drop_column("migration_history", "outcome")
