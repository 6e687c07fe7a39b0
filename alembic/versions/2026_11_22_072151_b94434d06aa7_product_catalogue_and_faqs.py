"""product catalogue and FAQs: the launch range of 8 products and 6 help answers

Revision ID: b94434d06aa7
Revises: 13b888afe617
Create Date: 2026-11-22 07:21:51.901203
"""

import json
from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b94434d06aa7"
down_revision: str | Sequence[str] | None = "13b888afe617"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class JSONBList(sa.TypeDecorator):
    """JSONB that ``--sql`` mode can write inline: SQLAlchemy has no JSONB literal renderer."""

    impl = postgresql.JSONB
    cache_ok = True

    def process_literal_param(self, value: list[str], dialect: sa.Dialect) -> str:
        quoted = json.dumps(value, ensure_ascii=False).replace("'", "''")
        return f"'{quoted}'::jsonb"


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
    sa.column("question", sa.Text),
    sa.column("answer", sa.Text),
    sa.column("category", sa.String),
    sa.column("sort_order", sa.Integer),
    sa.column("is_active", sa.Boolean),
)

PRODUCTS = [
    {
        "code": "everyday_current",
        "name": "Everyday Current Account",
        "account_type_code": "current_account",
        "description": (
            "A no-fee current account for day-to-day banking, with a contactless Visa debit "
            "card, instant spending notifications and an optional arranged overdraft."
        ),
        "interest_rate": Decimal("0.00"),
        "features": [
            "No monthly fee",
            "Contactless Visa debit card with Apple Pay and Google Pay",
            "Arranged overdraft up to £1,500, subject to status (39.9% EAR variable)",
            "Faster Payments and standing orders in the app",
            "Eligible deposits protected by the FSCS up to £120,000",
        ],
        "requirements": [
            "Aged 18 or over",
            "UK resident with a UK address",
            "Photo ID and proof of address",
        ],
        "is_active": True,
    },
    {
        "code": "premier_current",
        "name": "Premier Current Account",
        "account_type_code": "current_account",
        "description": (
            "Our packaged current account for customers with higher incomes or savings: "
            "worldwide family travel insurance, UK breakdown cover and no fees on card "
            "spending abroad, for £18 a month."
        ),
        "interest_rate": Decimal("0.00"),
        "features": [
            "Worldwide family travel insurance",
            "UK and European breakdown cover",
            "No foreign transaction fees on debit card spending",
            "Dedicated Premier phone line, open 24 hours",
            "Monthly account fee of £18",
        ],
        "requirements": [
            "Aged 18 or over and a UK resident",
            "Annual income of £75,000 or more paid into the account, "
            "or £100,000 in savings or investments with us",
        ],
        "is_active": True,
    },
    {
        "code": "easy_access_saver",
        "name": "Easy Access Saver",
        "account_type_code": "savings",
        "description": (
            "A variable-rate savings account you can pay into and withdraw from whenever you "
            "like, with interest calculated daily and paid monthly."
        ),
        "interest_rate": Decimal("3.75"),
        "features": [
            "3.75% AER / 3.69% gross variable",
            "Unlimited withdrawals with no notice or penalty",
            "Open with £1",
            "Interest paid monthly",
        ],
        "requirements": [
            "Aged 16 or over and a UK resident",
            "An Everyday or Premier Current Account with us to pay in and withdraw",
        ],
        "is_active": True,
    },
    {
        "code": "fixed_saver_1yr",
        "name": "1 Year Fixed Rate Saver",
        "account_type_code": "savings",
        "description": (
            "Lock away a lump sum for 12 months at a fixed rate. No withdrawals are allowed "
            "until the term ends; interest is paid on maturity."
        ),
        "interest_rate": Decimal("4.20"),
        "features": [
            "4.20% AER / 4.20% gross fixed for 12 months",
            "Deposit from £1,000 up to £250,000",
            "Pay in during the first 14 days only",
            "Interest paid on maturity",
        ],
        "requirements": [
            "Aged 18 or over and a UK resident",
            "A minimum opening deposit of £1,000",
        ],
        "is_active": True,
    },
    {
        "code": "rewards_credit_card",
        "name": "Rewards Credit Card",
        "account_type_code": "credit_card",
        "description": (
            "A Mastercard credit card that pays 0.5% cashback on purchases, with 0% on "
            "purchases for the first 3 months. Representative 24.9% APR (variable)."
        ),
        "interest_rate": Decimal("24.90"),
        "features": [
            "0.5% cashback on purchases, paid annually",
            "0% on purchases for 3 months from account opening",
            "No annual fee",
            "Section 75 protection on purchases between £100 and £30,000",
        ],
        "requirements": [
            "Aged 18 or over and a UK resident",
            "Annual income of £10,000 or more",
            "Subject to a credit check and affordability assessment",
        ],
        "is_active": True,
    },
    {
        "code": "fixed_mortgage_2yr",
        "name": "2 Year Fixed Mortgage (75% LTV)",
        "account_type_code": "mortgage",
        "description": (
            "A residential mortgage with a rate fixed for 2 years, then our Standard Variable "
            "Rate. For borrowing up to 75% of the property's value."
        ),
        "interest_rate": Decimal("4.29"),
        "features": [
            "4.29% fixed until the end of the 2nd year",
            "Overpay up to 10% of the balance each year without an early repayment charge",
            "£999 product fee, which can be added to the loan",
            "Free standard valuation",
        ],
        "requirements": [
            "A deposit or equity of at least 25%",
            "Property in England, Wales or Scotland",
            "Income and affordability assessment and a credit check",
        ],
        "is_active": True,
    },
    {
        "code": "tracker_mortgage",
        "name": "Lifetime Tracker Mortgage",
        "account_type_code": "mortgage",
        "description": (
            "A mortgage whose rate tracks the Bank of England Bank Rate plus 0.74% for the "
            "whole term, with no early repayment charges."
        ),
        "interest_rate": Decimal("4.74"),
        "features": [
            "Bank Rate + 0.74% for the full term",
            "No early repayment charges",
            "Port the mortgage when you move home",
        ],
        "requirements": [
            "A deposit or equity of at least 40%",
            "Income and affordability assessment and a credit check",
        ],
        "is_active": True,
    },
    {
        "code": "personal_loan",
        "name": "Personal Loan",
        "account_type_code": "personal_loan",
        "description": (
            "An unsecured loan of £1,000 to £35,000 over 1 to 7 years with fixed monthly "
            "repayments. Representative 6.4% APR for £7,500 to £25,000."
        ),
        "interest_rate": Decimal("6.40"),
        "features": [
            "Fixed monthly repayments for the whole term",
            "Money paid into your account the same day if approved",
            "No arrangement fee",
            "Repay early at any time, with up to 58 days' interest charged",
        ],
        "requirements": [
            "Aged 18 or over and a UK resident",
            "An income of £10,000 or more a year",
            "Subject to a credit check and affordability assessment",
        ],
        "is_active": True,
    },
]

FAQS = [
    {
        "slug": "opening-an-account",
        "question": "How do I open an account?",
        "answer": (
            "You can open most accounts in our mobile app or online in about 10 minutes. "
            "You will need to be 18 or over (16 for the Easy Access Saver), live in the UK, "
            "and have photo ID such as a passport or driving licence. We may also ask for "
            "proof of address. We run identity and, for some products, credit checks before "
            "we open your account."
        ),
        "category": "accounts",
        "sort_order": 10,
        "is_active": True,
    },
    {
        "slug": "contacting-us",
        "question": "How can I contact the bank?",
        "answer": (
            "Message us any time in the app or through web chat. You can call us on "
            "0345 600 7000, 8am to 8pm Monday to Friday and 9am to 5pm on Saturdays. If you "
            "think your card or details have been lost, stolen or used by someone else, call "
            "us straight away on 0345 600 7999, 24 hours a day."
        ),
        "category": "help",
        "sort_order": 20,
        "is_active": True,
    },
    {
        "slug": "fees-and-charges",
        "question": "What fees will I pay?",
        "answer": (
            "The Everyday Current Account has no monthly fee; the Premier Current Account "
            "costs £18 a month. Arranged overdrafts are charged at 39.9% EAR variable and "
            "there are no fees for unarranged borrowing: we will decline payments instead. "
            "Our full tariff is in the Fees and Charges section of the app and on our "
            "website."
        ),
        "category": "fees",
        "sort_order": 30,
        "is_active": True,
    },
    {
        "slug": "interest-rates",
        "question": "How is interest worked out on my savings?",
        "answer": (
            "We calculate interest daily on the balance at the end of each day and pay it "
            "monthly or on maturity, depending on the account. AER (Annual Equivalent Rate) "
            "shows what the interest rate would be if interest were paid and compounded once "
            "a year, so you can compare accounts. Variable rates can change; we will tell "
            "you at least 14 days before we reduce your rate."
        ),
        "category": "savings",
        "sort_order": 40,
        "is_active": True,
    },
    {
        "slug": "keeping-your-account-safe",
        "question": "How do I keep my account safe?",
        "answer": (
            "We will never ask for your full PIN, passcode or one-time security code, and we "
            "will never ask you to move money to a 'safe account'. If someone contacts you "
            "claiming to be from the bank, hang up and call us on the number on the back of "
            "your card. Keep the app up to date, and freeze your card in the app if you "
            "cannot find it."
        ),
        "category": "security",
        "sort_order": 50,
        "is_active": True,
    },
    {
        "slug": "mobile-app",
        "question": "What can I do in the mobile app?",
        "answer": (
            "In the app you can check balances, make payments, set up standing orders, "
            "freeze and unfreeze your card, see your PIN, manage spending by category and "
            "chat to us. Download it from the App Store or Google Play and log in with your "
            "customer ID and the passcode you set during registration."
        ),
        "category": "digital",
        "sort_order": 60,
        "is_active": True,
    },
]


def upgrade() -> None:
    """Apply the product catalogue and FAQs."""
    op.bulk_insert(products, PRODUCTS)
    op.bulk_insert(faqs, FAQS)


def downgrade() -> None:
    """Unapply the product catalogue and FAQs."""
    slugs = [faq["slug"] for faq in FAQS]
    op.execute(faqs.delete().where(faqs.c.slug.in_(slugs)))
    codes = [product["code"] for product in PRODUCTS]
    # Refuses, naming the rows, if any account still holds one of these products.
    op.execute(sa.select(sa.func.refdata_assert_unreferenced("products", "code", *codes)))
    op.execute(products.delete().where(products.c.code.in_(codes)))
