"""What the reference-data revisions put in, and that the Python enums agree with head."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command

from seed_data.enums import LOOKUP_ENUMS
from tests.helpers import config_for, insert_customer, revision_steps

CATALOGUE_2027 = next(
    s.revision for s in revision_steps() if s.file_stem.endswith("catalogue_update_for_2027")
)


@pytest.fixture
def catalogue_2027(engine: sa.Engine) -> sa.Engine:
    """A database at the 2027 catalogue update. What it and the revisions before it put in
    is theirs to test; head's catalogue is whatever later revisions made of it."""
    command.upgrade(config_for(engine), CATALOGUE_2027)
    return engine


@pytest.mark.history
@pytest.mark.parametrize("table", sorted(LOOKUP_ENUMS))
def test_enum_members_equal_lookup_rows_at_head(table: str, head_engine: sa.Engine) -> None:
    enum = LOOKUP_ENUMS[table]
    with head_engine.connect() as conn:
        codes = set(conn.scalars(sa.text(f"SELECT code FROM {table}")))
    members = {member.value for member in enum}
    assert members == codes, (
        f"{enum.__name__} and the {table} rows at head differ: only in the enum"
        f" {sorted(members - codes)}, only in the table {sorted(codes - members)}. Add a"
        f" migration for new rows, then update seed_data/enums.py to match."
    )


def test_the_catalogue_revisions_give_the_catalogue_faqs_and_categories(
    catalogue_2027: sa.Engine,
) -> None:
    with catalogue_2027.connect() as conn:
        # The tables those revisions filled: later reference tables do not exist there yet.
        counts = {
            t: conn.scalar(sa.text(f"SELECT count(*) FROM {t}"))
            for t in ("transaction_categories", "faqs", "products")
        }
        active = conn.scalar(sa.text("SELECT count(*) FROM products WHERE is_active"))
        products = conn.execute(
            sa.text("SELECT code, interest_rate, features, requirements FROM products")
        ).all()
    assert counts["transaction_categories"] == 16
    assert counts["faqs"] == 6
    assert counts["products"] == 9 and active == 8, "8 launch products + ISA, 2-year fix retired"
    for code, rate, features, requirements in products:
        assert isinstance(rate, Decimal), f"{code}: interest_rate must come back as Decimal"
        assert features and all(isinstance(f, str) for f in features), code
        assert requirements and all(isinstance(r, str) for r in requirements), code
    rates = {code: rate for code, rate, *_ in products}
    assert rates["easy_access_saver"] == Decimal("3.50")


def test_catalogue_update_changed_exactly_what_it_says(catalogue_2027: sa.Engine) -> None:
    with catalogue_2027.connect() as conn:
        retired = conn.scalars(sa.text("SELECT code FROM products WHERE NOT is_active")).all()
        answer = conn.scalar(sa.text("SELECT answer FROM faqs WHERE slug = 'contacting-us'"))
        isa = conn.scalar(
            sa.text("SELECT account_type_code FROM products WHERE code = 'easy_access_cash_isa'")
        )
    assert retired == ["fixed_mortgage_2yr"]
    assert "8am to 8pm Monday to Saturday" in answer
    assert isa == "cash_isa"


def test_business_rows_get_ids_and_timestamps_from_the_database(head_engine: sa.Engine) -> None:
    with head_engine.begin() as conn:
        customer_pk = insert_customer(conn, "CUST-000009")
        customer = conn.execute(
            sa.text("SELECT id, created_at, is_vip FROM customers WHERE id = :id"),
            {"id": customer_pk},
        ).one()
    assert customer.id >= 1
    assert customer.created_at.tzinfo is not None, "timestamps must be timezone-aware"
    assert customer.is_vip is False
