"""refdata_assert_unreferenced(): the check every reference-data downgrade makes first.

The shipped schema only has single-column foreign keys to natural keys; these tests add
the shapes a future revision might bring, so the guard cannot quietly miss them.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from seed_data.db import REFERENCE_ROW_IN_USE
from tests.helpers import insert_account, insert_customer


def guard(conn: sa.Connection, table: str, column: str, *keys: str) -> None:
    conn.execute(sa.select(sa.func.refdata_assert_unreferenced(table, column, *keys)))


def blocked_message(engine: sa.Engine, table: str, column: str, *keys: str) -> str:
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as raised:
        guard(conn, table, column, *keys)
    assert raised.value.orig.pgcode == REFERENCE_ROW_IN_USE, f"unexpected error: {raised.value}"
    return raised.value.orig.diag.message_primary


def test_guard_passes_rows_nobody_uses(head_engine: sa.Engine) -> None:
    with head_engine.connect() as conn:
        guard(conn, "products", "code", "personal_loan", "tracker_mortgage")


def test_guard_counts_each_referencing_table(head_engine: sa.Engine) -> None:
    with head_engine.begin() as conn:
        customer = insert_customer(conn, "CUST-000003")
        insert_account(conn, customer, "40000001", "personal_loan", "personal_loan")
    message = blocked_message(head_engine, "account_types", "code", "personal_loan", "savings")
    assert message == (
        "cannot downgrade: this revision would delete account_types rows that are still in use"
        " (1 row(s) in accounts.account_type_code reference personal_loan;"
        " 3 row(s) in products.account_type_code reference personal_loan, savings)"
    )


def test_guard_sees_composite_and_non_key_foreign_keys(head_engine: sa.Engine) -> None:
    with head_engine.begin() as conn:
        conn.execute(
            sa.text("""
                ALTER TABLE products ADD UNIQUE (code, account_type_code);
                CREATE TABLE offers (
                    product_code text, account_type_code text,
                    FOREIGN KEY (product_code, account_type_code)
                        REFERENCES products (code, account_type_code) ON DELETE CASCADE
                );
                CREATE TABLE promotions (
                    product_name text REFERENCES products (name) ON DELETE CASCADE
                );
                INSERT INTO offers VALUES ('personal_loan', 'personal_loan');
                INSERT INTO promotions VALUES ('Lifetime Tracker Mortgage');
            """)
        )
    message = blocked_message(head_engine, "products", "code", "personal_loan", "tracker_mortgage")
    assert "1 row(s) in offers (product_code, account_type_code) reference personal_loan" in message
    assert "1 row(s) in promotions.product_name reference tracker_mortgage" in message


def test_guard_ignores_self_references_deleted_together(head_engine: sa.Engine) -> None:
    with head_engine.begin() as conn:
        conn.execute(
            sa.text("""
                ALTER TABLE faqs ADD COLUMN see_also varchar(80) REFERENCES faqs (slug);
                UPDATE faqs SET see_also = 'contacting-us' WHERE slug = 'mobile-app';
            """)
        )
    with head_engine.connect() as conn:
        guard(conn, "faqs", "slug", "contacting-us", "mobile-app")
    message = blocked_message(head_engine, "faqs", "slug", "contacting-us")
    assert "1 row(s) in faqs.see_also reference contacting-us" in message


def test_guard_refuses_a_column_the_table_does_not_have(head_engine: sa.Engine) -> None:
    with head_engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="has no column"):
        guard(conn, "products", "Code", "personal_loan")


def diagnostics_during(engine: sa.Engine, direction: str, *keys: str) -> tuple[str, str]:
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as raised:
        conn.execute(
            sa.select(
                sa.func.refdata_assert_unreferenced_during(direction, "products", "code", *keys)
            )
        )
    assert raised.value.orig.pgcode == REFERENCE_ROW_IN_USE, f"unexpected error: {raised.value}"
    diag = raised.value.orig.diag
    return diag.message_primary, diag.message_hint


def test_guard_during_upgrade_says_upgrade_and_advises_keeping_the_rows(
    head_engine: sa.Engine,
) -> None:
    with head_engine.begin() as conn:
        customer = insert_customer(conn, "CUST-000004")
        insert_account(conn, customer, "40000002", "personal_loan", "personal_loan")
    message, hint = diagnostics_during(head_engine, "upgrade", "personal_loan")
    assert message == (
        "cannot upgrade: this revision would delete products rows that are still in use"
        " (1 row(s) in accounts.product_code reference personal_loan)"
    )
    assert hint.startswith("This step was rolled back and changed nothing. Keep those rows")
    assert "roll forward" not in hint

    message, hint = diagnostics_during(head_engine, "downgrade", "personal_loan")
    assert message.startswith("cannot downgrade: this revision would delete products rows")
    assert hint.endswith("stay on this revision and roll forward instead.")


def test_guard_during_passes_rows_nobody_uses_and_refuses_an_unknown_direction(
    head_engine: sa.Engine,
) -> None:
    with head_engine.connect() as conn:
        conn.execute(
            sa.select(
                sa.func.refdata_assert_unreferenced_during("upgrade", "products", "code", "x")
            )
        )
    with head_engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="direction must"):
        conn.execute(
            sa.select(
                sa.func.refdata_assert_unreferenced_during("sideways", "products", "code", "x")
            )
        )
