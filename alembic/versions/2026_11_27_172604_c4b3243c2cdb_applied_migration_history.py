"""applied migration history: every upgrade and downgrade step, its checksum, when and by whom

Revision ID: c4b3243c2cdb
Revises: e46734c5e9bb
Create Date: 2026-11-27 17:26:04.210082

alembic_version says which revision a database is at, not how it got there. This table is
the log ``alembic/env.py`` appends to, in each step's own transaction: the revision, the
direction, the SHA-256 of the revision file that ran (as ``alembic/versions.sha256``
records it), when the step started and finished, the database user, client application
and host, and the project version. Rows for revisions applied before this one are written
by env.py when this revision is applied (see docs/reference-data.md, "Applied history").

The log is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE. No downgrade takes
it away: this revision's downgrade keeps the table, rows and triggers (the record of what
ran must outlive a rollback), and its upgrade keeps a table an earlier downgrade left. Only
the explicit teardown, ``alembic -x teardown=yes downgrade base``, drops it.

Rewritten in place after release (README, "Revisions rewritten in place"): the first text
dropped the table in its downgrade, so the documented rollback erased the history. The
upgrade makes the same table; the lock keeps the first text's digest as an earlier text.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c4b3243c2cdb"
down_revision: str | Sequence[str] | None = "e46734c5e9bb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A recorded step has its checksum, times and user; a revision applied before recording
# began ('not_recorded') has none of them, and was an upgrade.
RECORDED_OR_NOT = """
CASE WHEN method = 'not_recorded'
    THEN direction = 'upgrade' AND checksum IS NULL AND started_at IS NULL
        AND finished_at IS NULL AND duration IS NULL
    ELSE checksum IS NOT NULL AND checksum ~ '^[0-9a-f]{64}$' AND started_at IS NOT NULL
        AND finished_at IS NOT NULL AND duration IS NOT NULL AND database_user IS NOT NULL
END
"""

APPEND_ONLY_FUNCTION = r"""
CREATE OR REPLACE FUNCTION migration_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'migration_history is append-only: % is not allowed', TG_OP
        USING HINT = 'It records what ran. A database that ran something else needs a new'
            ' revision, not an edited history.';
END
$$
"""
APPEND_ONLY_TRIGGERS = (
    "CREATE OR REPLACE TRIGGER migration_history_append_only BEFORE UPDATE OR DELETE ON migration_history"
    " FOR EACH ROW EXECUTE FUNCTION migration_history_append_only()",
    "CREATE OR REPLACE TRIGGER migration_history_no_truncate BEFORE TRUNCATE ON migration_history"
    " FOR EACH STATEMENT EXECUTE FUNCTION migration_history_append_only()",
)


def upgrade() -> None:
    """Apply the applied-migration history table (a table an earlier downgrade kept stays)."""
    op.create_table(
        "migration_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("revision", sa.Text(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("checksum", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration", sa.Interval(), nullable=True),
        sa.Column("database_user", sa.Text(), nullable=True),
        sa.Column("application_name", sa.Text(), nullable=True),
        sa.Column("client_addr", postgresql.INET(), nullable=True),
        sa.Column("project_version", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "direction IN ('upgrade', 'downgrade')", name=op.f("ck_migration_history_direction")
        ),
        sa.CheckConstraint(
            "method IN ('online', 'sql_script', 'caller_transaction', 'not_recorded')",
            name=op.f("ck_migration_history_method"),
        ),
        sa.CheckConstraint(RECORDED_OR_NOT, name=op.f("ck_migration_history_recorded_or_not")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_history")),
        if_not_exists=True,
    )
    op.execute(APPEND_ONLY_FUNCTION)
    for trigger in APPEND_ONLY_TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    """Unapply the applied-migration history table: kept, unless this is the teardown."""
    if not op.get_context().opts.get("teardown"):
        return  # a rollback keeps the record of what ran, and env.py goes on appending to it
    op.drop_table("migration_history")
    op.execute("DROP FUNCTION migration_history_append_only()")
