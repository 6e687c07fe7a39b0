"""The project's own lint rules (seed_data/migration_lint.py): what squawk cannot see."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command

from seed_data.migration_lint import (
    DROP_CONSTRAINT_RENAMED,
    LOCK_THEN_WRITE,
    drop_constraint_renamed,
    lock_then_write,
    statements,
    tables_named,
    without_copy_rows,
)
from tests.migrator import Migrator
from tests.refdata_support import Workspace
from tests.revision_samples import FILL_IN_THE_SAME_TRANSACTION, UNDO_FILL


def test_a_column_filled_in_the_transaction_that_added_it_is_flagged(
    files_workspace: Workspace,
) -> None:
    path = files_workspace.add_revision("amount in pence", FILL_IN_THE_SAME_TRANSACTION, UNDO_FILL)
    migrator = Migrator(ini=files_workspace.ini)
    script = migrator.script.get_revision("head")
    sql = migrator.sql("upgrade", script.down_revision, script.revision)

    [finding] = lock_then_write(sql)

    assert finding.rule == LOCK_THEN_WRITE, path
    assert "UPDATE transactions" in finding.message
    assert "changes rows of transactions" in finding.message
    assert "took ACCESS EXCLUSIVE on transactions" in finding.message
    assert "docs/schema-revisions.md" in finding.message
    assert sql.splitlines()[finding.line - 1].startswith("UPDATE transactions")


LOCKED = "BEGIN;\n{lock};\n{write};\nCOMMIT;\n"


@pytest.mark.parametrize(
    ("lock", "write", "table", "mode"),
    [
        (
            "ALTER TABLE messages ADD COLUMN x int",
            "UPDATE messages SET x = 1",
            "messages",
            "ACCESS EXCLUSIVE",
        ),
        (
            "CREATE INDEX ix_t ON transactions (merchant)",
            "DELETE FROM transactions WHERE amount = 0",
            "transactions",
            "SHARE",
        ),
        (
            "LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE",
            "UPDATE accounts a SET balance = 0",
            "accounts",
            "SHARE ROW EXCLUSIVE",
        ),
        # A lock on a reference table, held while business rows change: app reads of
        # products wait too.
        (
            "ALTER TABLE products ADD COLUMN x int",
            "UPDATE transactions SET merchant = upper(merchant)",
            "products",
            "ACCESS EXCLUSIVE",
        ),
        (
            "ALTER TABLE customers ADD CONSTRAINT fk FOREIGN KEY (x) REFERENCES accounts (id)",
            "INSERT INTO messages SELECT * FROM messages",
            "customers",
            "ACCESS EXCLUSIVE",
        ),
        (
            'ALTER TABLE "messages" ADD COLUMN x int',
            "DO $$ BEGIN UPDATE public.messages SET x = 1; END $$",
            "messages",
            "ACCESS EXCLUSIVE",
        ),
        (
            "CREATE OR REPLACE TRIGGER t BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION f()",
            "UPDATE conversations SET intent = 'x'",
            "messages",
            "SHARE ROW EXCLUSIVE",
        ),
        (
            "TRUNCATE demo_data_set",
            "update Messages set content = ''",
            "demo_data_set",
            "ACCESS EXCLUSIVE",
        ),
    ],
)
def test_rows_changed_under_a_table_lock_are_flagged(
    lock: str, write: str, table: str, mode: str
) -> None:
    [finding] = lock_then_write(LOCKED.format(lock=lock, write=write))
    assert finding.line == 3
    assert f"took {mode} on {table} at line 2" in finding.message


@pytest.mark.parametrize(
    "sql",
    [
        # Committed first: the backfill runs after the lock is gone.
        "BEGIN;\nALTER TABLE messages ADD COLUMN x int;\nCOMMIT;\nUPDATE messages SET x = 1;",
        "BEGIN;\nALTER TABLE messages ADD COLUMN x int;\nCOMMIT;\nBEGIN;\nUPDATE messages SET x = 1"
        " WHERE id <= 1000;\nCOMMIT;",
        # Reference tables are small; bookkeeping is written in every step.
        "BEGIN;\nALTER TABLE products ADD COLUMN x int;\nUPDATE products SET x = 1;\n"
        "INSERT INTO migration_history (revision) VALUES ('a');\n"
        "UPDATE alembic_version SET version_num = 'b';\nCOMMIT;",
        # VALIDATE takes SHARE UPDATE EXCLUSIVE, which no app read or write waits for.
        "BEGIN;\nALTER TABLE messages VALIDATE CONSTRAINT ck;\nUPDATE messages SET x = 1;\nCOMMIT;",
        # A table nobody can see before the commit.
        "BEGIN;\nCREATE TABLE archive (id bigint REFERENCES archive (id));\n"
        "CREATE INDEX ix_a ON archive (id);\nINSERT INTO archive SELECT id FROM messages;\nCOMMIT;",
        # Words in strings, comments and function bodies are not statements run here.
        "BEGIN;\nALTER TABLE messages ADD COLUMN x int;\n-- UPDATE messages SET x = 1;\n"
        "SELECT 'UPDATE messages SET x = 1';\nCREATE FUNCTION f() RETURNS void LANGUAGE sql"
        " AS $f$ UPDATE messages SET x = 1 $f$;\nCOMMIT;",
        # Row locks are not table locks.
        "BEGIN;\nSELECT 1 FROM conversations WHERE id = 1 FOR NO KEY UPDATE;\n"
        "UPDATE messages SET x = 1 WHERE conversation_id = 1;\nCOMMIT;",
    ],
)
def test_what_holds_no_table_lock_while_rows_change_is_not_flagged(sql: str) -> None:
    assert lock_then_write(sql) == []


def test_statements_split_where_psql_splits_them() -> None:
    sql = (
        "SELECT ';' AS a, E'\\';' AS b; /* ; /* nested ; */ */\n"
        'SELECT 1 AS "x;y";\nDO $body$ BEGIN PERFORM 1; END $body$;\n-- ; \nSELECT 2'
    )
    assert [(s.line, s.text) for s in statements(sql)] == [
        (1, "SELECT ';' AS a, E'\\';' AS b"),
        (2, 'SELECT 1 AS "x;y"'),
        (3, "DO $body$ BEGIN PERFORM 1; END $body$"),
        (5, "SELECT 2"),
    ]


def test_rows_a_copy_reads_from_the_script_are_data_not_statements() -> None:
    # A data-file revision's --sql: its rows may hold quotes, semicolons and SQL words.
    sql = (
        "BEGIN;\nALTER TABLE messages ADD COLUMN x int;\nCOMMIT;\n"
        'COPY faqs (slug, answer) FROM STDIN WITH (FORMAT csv, HEADER true);\n"slug","answer"\n'
        '"a","it\'s; UPDATE messages SET x = 1; BEGIN; ALTER TABLE messages"\n\\.\n'
        "SELECT 2;\n"
    )
    assert [(s.line, s.text) for s in statements(sql)][-2:] == [
        (4, "COPY faqs (slug, answer) FROM STDIN WITH (FORMAT csv, HEADER true)"),
        (8, "SELECT 2"),
    ]
    assert lock_then_write(sql) == []
    assert without_copy_rows(sql).count("\n") == sql.count("\n"), "line numbers must stay"


def test_the_tables_a_script_names_include_those_in_function_bodies() -> None:
    sql = "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN PERFORM 1 FROM conversations; END $$;\n"
    sql += "ALTER TABLE Messages ADD COLUMN x int; SELECT 'customers';"
    assert tables_named(sql, ["messages", "conversations", "customers", "accounts"]) == [
        "conversations",
        "messages",
    ]


DROP = "op.drop_constraint({name}, 'messages', type_={kind!r}{extra})\n"


@pytest.mark.parametrize(
    ("name", "kind", "extra", "flagged"),
    [
        ("'ck_messages_x'", "check", ", if_exists=True", True),
        ("NOT_NULL_CHECK", "check", ", if_exists=True", True),
        ("op.f('ck_messages_x')", "check", ", if_exists=True", False),
        ("'ck_messages_x'", "check", "", False),  # without IF EXISTS the miss fails loudly
        ("'uq_messages_x'", "unique", ", if_exists=True", False),  # no %(constraint_name)s
    ],
)
def test_a_silent_drop_of_a_renamed_constraint_is_flagged(
    name: str, kind: str, extra: str, flagged: bool
) -> None:
    found = drop_constraint_renamed(DROP.format(name=name, kind=kind, extra=extra))
    assert [f.rule for f in found] == ([DROP_CONSTRAINT_RENAMED] if flagged else [])
    if flagged:
        assert f"op.f({name})" in found[0].message


def test_the_naming_convention_does_rename_a_dropped_check_constraint(
    files_workspace: Workspace,
) -> None:
    """Why the rule exists: the name that reaches the database is not the one written."""
    source = "op.drop_constraint('ck_messages_x', 'messages', type_='check', if_exists=True)"
    files_workspace.add_revision("drop a check", "SELECT 1", "SELECT 1")
    path = files_workspace.new_revision_files()[-1]
    path.write_text(path.read_text().replace("op.execute('SELECT 1')", source, 1))
    migrator = Migrator(ini=files_workspace.ini)
    script = migrator.script.get_revision("head")
    sql = migrator.sql("upgrade", script.down_revision, script.revision)
    assert "DROP CONSTRAINT IF EXISTS ck_messages_ck_messages_x" in sql
    assert [f.rule for f in drop_constraint_renamed(path.read_text())] == [DROP_CONSTRAINT_RENAMED]


def test_a_new_revision_keeps_its_op_and_sa_imports(files_workspace: Workspace) -> None:
    """`alembic revision -m ...` runs ruff on the new file; its author needs both."""
    script = command.revision(files_workspace.config(), message="add a column")
    assert script is not None and script.path is not None
    text = Path(script.path).read_text(encoding="utf-8")
    assert "import sqlalchemy as sa\n" in text and "from alembic import op\n" in text, text
