"""core schema: lookup, reference and business tables

Creates every table empty (the reference rows arrive in later revisions) and the
refdata_assert_unreferenced() guard that reference-data downgrades call before deleting
rows, so that a rollback never cascades into, or trips over, customer data.

Revision ID: a6392e3ff2d2
Revises:
Create Date: 2026-11-22 07:21:10.135072
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a6392e3ff2d2"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Raised with SQLSTATE RF001, which env.py turns into a one-paragraph CLI error. It checks
# every foreign key into ref_table (composite ones, and ones to columns other than the
# key, included), counting each partitioned table once, and locks the rows first so that
# no new reference can appear between the check and the delete.
CREATE_GUARD = r"""
CREATE FUNCTION refdata_assert_unreferenced(
    ref_table regclass, key_column text, VARIADIC keys text[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    fk record;
    query text;
    in_use bigint;
    used_keys text[];
    problems text[] := '{}';
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_attribute
        WHERE attrelid = ref_table AND attname = key_column AND attnum > 0 AND NOT attisdropped
    ) THEN
        RAISE EXCEPTION 'refdata_assert_unreferenced: % has no column %', ref_table, key_column;
    END IF;

    EXECUTE format('SELECT FROM %s WHERE %I::text = ANY($1) FOR UPDATE', ref_table, key_column)
        USING keys;

    FOR fk IN
        SELECT c.conrelid::regclass AS child_table,
            count(*) AS column_count,
            string_agg(format('%I', child.attname), ', ' ORDER BY k.position) AS child_columns,
            string_agg(
                format('child.%I = parent.%I', child.attname, parent.attname),
                ' AND ' ORDER BY k.position
            ) AS join_condition
        FROM pg_constraint AS c
        CROSS JOIN LATERAL unnest(c.conkey, c.confkey)
            WITH ORDINALITY AS k (child_attnum, parent_attnum, position)
        JOIN pg_attribute AS child
            ON child.attrelid = c.conrelid AND child.attnum = k.child_attnum
        JOIN pg_attribute AS parent
            ON parent.attrelid = c.confrelid AND parent.attnum = k.parent_attnum
        WHERE c.contype = 'f' AND c.confrelid = ref_table AND c.conparentid = 0
        GROUP BY c.oid, c.conrelid
        ORDER BY c.conrelid::regclass::text, child_columns
    LOOP
        query := format(
            'SELECT count(*), array_agg(DISTINCT parent.%1$I::text ORDER BY parent.%1$I::text)'
            ' FROM %2$s AS child JOIN %3$s AS parent ON %4$s'
            ' WHERE parent.%1$I::text = ANY($1)',
            key_column, fk.child_table, ref_table, fk.join_condition
        );
        IF fk.child_table = ref_table THEN
            -- A row that refers to another row deleted with it is no obstacle.
            query := query || format(' AND NOT child.%I::text = ANY($1)', key_column);
        END IF;
        EXECUTE query INTO in_use, used_keys USING keys;
        IF in_use > 0 THEN
            problems := problems || format(
                CASE WHEN fk.column_count = 1
                    THEN '%s row(s) in %s.%s reference %s'
                    ELSE '%s row(s) in %s (%s) reference %s'
                END,
                in_use, fk.child_table, fk.child_columns, array_to_string(used_keys, ', ')
            );
        END IF;
    END LOOP;
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'RF001',
            MESSAGE = format(
                'cannot downgrade: this revision would delete %s rows that are still in use (%s)',
                ref_table, array_to_string(problems, '; ')
            ),
            HINT = 'This step was rolled back and changed nothing. Delete or re-point those'
                ' rows first, or stay on this revision and roll forward instead.';
    END IF;
END
$$
"""


def upgrade() -> None:
    """Apply the core schema."""
    op.create_table(
        "account_statuses",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_account_statuses")),
    )
    op.create_table(
        "account_types",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_account_types")),
    )
    op.create_table(
        "conversation_channels",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_conversation_channels")),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("customer_id", sa.String(length=20), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("is_vip", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_customers_customer_id")),
        sa.UniqueConstraint("email", name=op.f("uq_customers_email")),
    )
    op.create_table(
        "faqs",
        sa.Column("slug", sa.String(length=80), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=50), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_faqs")),
    )
    op.create_table(
        "message_roles",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_message_roles")),
    )
    op.create_table(
        "transaction_categories",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_transaction_categories")),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_code", sa.String(length=32), nullable=False),
        sa.Column("intent", sa.String(length=100), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["channel_code"],
            ["conversation_channels.code"],
            name=op.f("fk_conversations_channel_code_conversation_channels"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_conversations_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index(
        op.f("ix_conversations_customer_id"), "conversations", ["customer_id"], unique=False
    )
    op.create_table(
        "products",
        sa.Column("code", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("account_type_code", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("interest_rate", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.Column(
            "features",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "requirements",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.CheckConstraint(
            "interest_rate >= 0", name=op.f("ck_products_interest_rate_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["account_type_code"],
            ["account_types.code"],
            name=op.f("fk_products_account_type_code_account_types"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_products")),
        sa.UniqueConstraint("name", name=op.f("uq_products_name")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_number", sa.String(length=20), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("product_code", sa.String(length=50), nullable=False),
        sa.Column("account_type_code", sa.String(length=32), nullable=False),
        sa.Column("status_code", sa.String(length=32), nullable=False),
        sa.Column(
            "balance",
            sa.Numeric(precision=14, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "opened_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_type_code"],
            ["account_types.code"],
            name=op.f("fk_accounts_account_type_code_account_types"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_accounts_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_code"],
            ["products.code"],
            name=op.f("fk_accounts_product_code_products"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["status_code"],
            ["account_statuses.code"],
            name=op.f("fk_accounts_status_code_account_statuses"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("account_number", name=op.f("uq_accounts_account_number")),
    )
    op.create_index(op.f("ix_accounts_customer_id"), "accounts", ["customer_id"], unique=False)
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("role_code", sa.String(length=32), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column(
            "sent_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["role_code"],
            ["message_roles.code"],
            name=op.f("fk_messages_role_code_message_roles"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    op.create_index(
        op.f("ix_messages_conversation_id"), "messages", ["conversation_id"], unique=False
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), server_default=sa.text("'GBP'"), nullable=False),
        sa.Column("merchant", sa.String(length=120), nullable=False),
        sa.Column("category_code", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "currency ~ '^[A-Z]{3}$'", name=op.f("ck_transactions_currency_is_iso_4217")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_transactions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["category_code"],
            ["transaction_categories.code"],
            name=op.f("fk_transactions_category_code_transaction_categories"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
    )
    op.create_index(
        "ix_transactions_account_id_occurred_at",
        "transactions",
        ["account_id", "occurred_at"],
        unique=False,
    )
    op.execute(CREATE_GUARD)


def downgrade() -> None:
    """Unapply the core schema."""
    op.execute("DROP FUNCTION refdata_assert_unreferenced(regclass, text, text[])")
    op.drop_index("ix_transactions_account_id_occurred_at", table_name="transactions")
    op.drop_table("transactions")
    op.drop_index(op.f("ix_messages_conversation_id"), table_name="messages")
    op.drop_table("messages")
    op.drop_index(op.f("ix_accounts_customer_id"), table_name="accounts")
    op.drop_table("accounts")
    op.drop_table("products")
    op.drop_index(op.f("ix_conversations_customer_id"), table_name="conversations")
    op.drop_table("conversations")
    op.drop_table("transaction_categories")
    op.drop_table("message_roles")
    op.drop_table("faqs")
    op.drop_table("customers")
    op.drop_table("conversation_channels")
    op.drop_table("account_types")
    op.drop_table("account_statuses")
