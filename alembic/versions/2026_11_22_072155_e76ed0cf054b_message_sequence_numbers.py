"""message sequence numbers: explicit message order within a conversation, backfilled

Revision ID: e76ed0cf054b
Revises: 96913cafe93c
Create Date: 2026-11-22 07:21:55.281772

Messages were ordered by ``sent_at``, which ties when a customer message and the agent's
automated reply land in the same instant. ``sequence_no`` (1, 2, 3 ... per conversation)
makes the order explicit. Existing rows are numbered by ``(sent_at, id)``, which is the
order the app showed them in, so the downgrade can drop the column without losing anything
the upgrade cannot rebuild.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e76ed0cf054b"
down_revision: str | Sequence[str] | None = "96913cafe93c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL = """
UPDATE messages
SET sequence_no = numbered.sequence_no
FROM (
    SELECT id, row_number() OVER (PARTITION BY conversation_id ORDER BY sent_at, id)
        AS sequence_no
    FROM messages
) AS numbered
WHERE messages.id = numbered.id
"""


def upgrade() -> None:
    """Apply message sequence numbers."""
    op.add_column("messages", sa.Column("sequence_no", sa.Integer(), nullable=True))
    op.execute(BACKFILL)
    op.alter_column("messages", "sequence_no", nullable=False)
    op.create_unique_constraint(
        op.f("uq_messages_conversation_id_sequence_no"),
        "messages",
        ["conversation_id", "sequence_no"],
    )
    # The unique index leads with conversation_id, so it serves those lookups now.
    op.drop_index(op.f("ix_messages_conversation_id"), table_name="messages")


def downgrade() -> None:
    """Unapply message sequence numbers."""
    op.create_index(
        op.f("ix_messages_conversation_id"), "messages", ["conversation_id"], unique=False
    )
    op.drop_constraint(op.f("uq_messages_conversation_id_sequence_no"), "messages", type_="unique")
    op.drop_column("messages", "sequence_no")
