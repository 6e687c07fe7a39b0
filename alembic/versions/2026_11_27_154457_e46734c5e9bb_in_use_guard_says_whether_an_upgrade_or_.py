"""in-use guard says whether an upgrade or a downgrade stopped

Revision ID: e46734c5e9bb
Revises: 005fc96c69b8
Create Date: 2026-11-27 15:44:57.169026

refdata_assert_unreferenced() (core schema) always says "cannot downgrade" and advises
rolling forward: right for the hand-written revisions, which delete reference rows only
in their downgrade, wrong for a generated revision whose upgrade deletes a row that
business rows still use. Its body is frozen with the core schema, so this revision adds
refdata_assert_unreferenced_during(direction, ...): it runs the same check and, when an
upgrade is what stopped, says so and gives advice that fits an upgrade. A downgrade's
error passes through unchanged.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "e46734c5e9bb"
down_revision: str | Sequence[str] | None = "005fc96c69b8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Raised with SQLSTATE RF001 like the core guard, which env.py turns into a CLI error. The
# exception block is a subtransaction: when the check passes it commits into the caller's
# transaction, so the row locks the core guard takes are kept until the delete.
CREATE_GUARD = r"""
CREATE FUNCTION refdata_assert_unreferenced_during(
    direction text, ref_table regclass, key_column text, VARIADIC keys text[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    message text;
BEGIN
    IF direction IS NULL OR direction NOT IN ('upgrade', 'downgrade') THEN
        RAISE EXCEPTION 'refdata_assert_unreferenced_during: direction must be upgrade or'
            ' downgrade, not %', coalesce(quote_literal(direction), 'NULL');
    END IF;
    PERFORM refdata_assert_unreferenced(ref_table, key_column, VARIADIC keys);
EXCEPTION WHEN SQLSTATE 'RF001' THEN
    IF direction = 'downgrade' THEN
        RAISE;
    END IF;
    GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
    RAISE EXCEPTION USING
        ERRCODE = 'RF001',
        MESSAGE = regexp_replace(message, '^cannot downgrade:', 'cannot upgrade:'),
        HINT = 'This step was rolled back and changed nothing. Keep those rows: declare them'
            ' again (retired with is_active: false where the table has that column) and'
            ' release a new revision, or re-point the rows that use them, then upgrade.';
END
$$
"""


def upgrade() -> None:
    """Apply the direction-aware in-use guard."""
    op.execute(CREATE_GUARD)


def downgrade() -> None:
    """Unapply the direction-aware in-use guard."""
    op.execute("DROP FUNCTION refdata_assert_unreferenced_during(text, regclass, text, text[])")
