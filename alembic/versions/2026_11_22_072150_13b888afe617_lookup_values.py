"""lookup values: account types, statuses, channels, message roles, spending categories

Revision ID: 13b888afe617
Revises: a6392e3ff2d2
Create Date: 2026-11-22 07:21:50.056349
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "13b888afe617"
down_revision: str | Sequence[str] | None = "a6392e3ff2d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def lookup_table(name: str) -> sa.TableClause:
    return sa.table(
        name,
        sa.column("code", sa.String),
        sa.column("label", sa.String),
        sa.column("sort_order", sa.Integer),
    )


def rows(*labelled_codes: tuple[str, str]) -> list[dict[str, object]]:
    """Lookup rows in display order: sort_order is 10, 20, 30 ... leaving room between."""
    return [
        {"code": code, "label": label, "sort_order": 10 * position}
        for position, (code, label) in enumerate(labelled_codes, start=1)
    ]


ACCOUNT_TYPES = rows(
    ("current_account", "Current account"),
    ("savings", "Savings account"),
    ("credit_card", "Credit card"),
    ("mortgage", "Mortgage"),
    ("personal_loan", "Personal loan"),
)
ACCOUNT_STATUSES = rows(
    ("pending", "Pending"),
    ("active", "Active"),
    ("frozen", "Frozen"),
    ("closed", "Closed"),
)
CONVERSATION_CHANNELS = rows(
    ("web_chat", "Web chat"),
    ("mobile_app", "Mobile app"),
    ("phone", "Phone"),
    ("email", "Email"),
)
MESSAGE_ROLES = rows(
    ("customer", "Customer"),
    ("agent", "Agent"),
    ("system", "System"),
)
TRANSACTION_CATEGORIES = rows(
    ("groceries", "Groceries"),
    ("eating_out", "Eating out"),
    ("transport", "Transport"),
    ("bills", "Bills"),
    ("entertainment", "Entertainment"),
    ("shopping", "Shopping"),
    ("subscriptions", "Subscriptions"),
    ("holidays", "Holidays"),
    ("health", "Health"),
    ("personal_care", "Personal care"),
    ("home", "Home"),
    ("cash", "Cash"),
    ("charity", "Charity"),
    ("gifts", "Gifts"),
    ("transfers", "Transfers"),
    ("general", "General"),
)

LOOKUPS = {
    lookup_table("account_types"): ACCOUNT_TYPES,
    lookup_table("account_statuses"): ACCOUNT_STATUSES,
    lookup_table("conversation_channels"): CONVERSATION_CHANNELS,
    lookup_table("message_roles"): MESSAGE_ROLES,
    lookup_table("transaction_categories"): TRANSACTION_CATEGORIES,
}


def upgrade() -> None:
    """Apply the lookup values."""
    for table, values in LOOKUPS.items():
        op.bulk_insert(table, values)


def downgrade() -> None:
    """Unapply the lookup values."""
    for table, values in reversed(LOOKUPS.items()):
        codes = [row["code"] for row in values]
        # Refuses, naming the rows, if anything still references these codes.
        op.execute(sa.select(sa.func.refdata_assert_unreferenced(table.name, "code", *codes)))
        op.execute(table.delete().where(table.c.code.in_(codes)))
