"""catalogue update for 2027: Cash ISA launch, saver rate cut, 2-year fix retired, contact hours

Revision ID: 96913cafe93c
Revises: b94434d06aa7
Create Date: 2026-11-22 07:21:53.601424

How a live catalogue evolves: a new lookup value (account type ``cash_isa``) and the
product that uses it; a variable rate cut (with the feature text quoting it); a product
withdrawn from sale (``is_active = false``, kept because existing accounts still hold it);
and a reworded FAQ answer. Every changed field's previous value is frozen here too, so the
downgrade restores it exactly.
"""

import json
from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "96913cafe93c"
down_revision: str | Sequence[str] | None = "b94434d06aa7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class JSONBList(sa.TypeDecorator):
    """JSONB that ``--sql`` mode can write inline: SQLAlchemy has no JSONB literal renderer."""

    impl = postgresql.JSONB
    cache_ok = True

    def process_literal_param(self, value: list[str], dialect: sa.Dialect) -> str:
        quoted = json.dumps(value, ensure_ascii=False).replace("'", "''")
        return f"'{quoted}'::jsonb"


account_types = sa.table(
    "account_types",
    sa.column("code", sa.String),
    sa.column("label", sa.String),
    sa.column("sort_order", sa.Integer),
)
products = sa.table(
    "products",
    sa.column("code", sa.String),
    sa.column("name", sa.String),
    sa.column("account_type_code", sa.String),
    sa.column("description", sa.Text),
    sa.column("interest_rate", sa.Numeric(5, 2)),
    sa.column("features", JSONBList),
    sa.column("requirements", JSONBList),
    sa.column("is_active", sa.Boolean),
)
faqs = sa.table(
    "faqs",
    sa.column("slug", sa.String),
    sa.column("answer", sa.Text),
)

NEW_ACCOUNT_TYPES = [
    # Between savings (20) and credit_card (30) in display order.
    {"code": "cash_isa", "label": "Cash ISA", "sort_order": 25},
]

NEW_PRODUCTS = [
    {
        "code": "easy_access_cash_isa",
        "name": "Easy Access Cash ISA",
        "account_type_code": "cash_isa",
        "description": (
            "Tax-free savings with instant access. Save up to the £20,000 annual ISA "
            "allowance and withdraw whenever you like; interest is paid monthly."
        ),
        "interest_rate": Decimal("4.05"),
        "features": [
            "4.05% AER / 3.98% tax-free variable",
            "Interest is free of UK income tax",
            "Withdraw at any time without losing interest",
            "Transfers in from other providers' ISAs accepted",
        ],
        "requirements": [
            "Aged 18 or over and a UK resident for tax purposes",
            "Your National Insurance number",
            "You have not paid into another cash ISA this tax year, unless the rules allow it",
        ],
        "is_active": True,
    },
]

# code -> (fields before this revision, the same fields after it)
PRODUCT_CHANGES = {
    "easy_access_saver": (
        {
            "interest_rate": Decimal("3.75"),
            "features": [
                "3.75% AER / 3.69% gross variable",
                "Unlimited withdrawals with no notice or penalty",
                "Open with £1",
                "Interest paid monthly",
            ],
        },
        {
            "interest_rate": Decimal("3.50"),
            "features": [
                "3.50% AER / 3.44% gross variable",
                "Unlimited withdrawals with no notice or penalty",
                "Open with £1",
                "Interest paid monthly",
            ],
        },
    ),
    # Withdrawn from sale; customers who hold it keep it until their fix ends.
    "fixed_mortgage_2yr": ({"is_active": True}, {"is_active": False}),
}

# slug -> (fields before this revision, the same fields after it)
FAQ_CHANGES = {
    "contacting-us": (
        {
            "answer": (
                "Message us any time in the app or through web chat. You can call us on "
                "0345 600 7000, 8am to 8pm Monday to Friday and 9am to 5pm on Saturdays. If "
                "you think your card or details have been lost, stolen or used by someone "
                "else, call us straight away on 0345 600 7999, 24 hours a day."
            ),
        },
        {
            "answer": (
                "Message us any time in the app or through web chat: our assistant answers "
                "straight away and passes you to a person when you need one. You can call us "
                "on 0345 600 7000, 8am to 8pm Monday to Saturday. If you think your card or "
                "details have been lost, stolen or used by someone else, freeze your card in "
                "the app and call us on 0345 600 7999, 24 hours a day."
            ),
        },
    ),
}


def upgrade() -> None:
    """Apply the 2027 catalogue update."""
    op.bulk_insert(account_types, NEW_ACCOUNT_TYPES)
    op.bulk_insert(products, NEW_PRODUCTS)
    for code, (_, after) in PRODUCT_CHANGES.items():
        op.execute(products.update().where(products.c.code == code).values(**after))
    for slug, (_, after) in FAQ_CHANGES.items():
        op.execute(faqs.update().where(faqs.c.slug == slug).values(**after))


def downgrade() -> None:
    """Unapply the 2027 catalogue update."""
    for slug, (before, _) in FAQ_CHANGES.items():
        op.execute(faqs.update().where(faqs.c.slug == slug).values(**before))
    for code, (before, _) in PRODUCT_CHANGES.items():
        op.execute(products.update().where(products.c.code == code).values(**before))

    # Refuse, naming the rows, if an account holds the new product or type.
    product_codes = [product["code"] for product in NEW_PRODUCTS]
    op.execute(sa.select(sa.func.refdata_assert_unreferenced("products", "code", *product_codes)))
    op.execute(products.delete().where(products.c.code.in_(product_codes)))
    type_codes = [row["code"] for row in NEW_ACCOUNT_TYPES]
    op.execute(sa.select(sa.func.refdata_assert_unreferenced("account_types", "code", *type_codes)))
    op.execute(account_types.delete().where(account_types.c.code.in_(type_codes)))
