"""Row-level round trips: every revision's downgrade restores exactly the rows it found.

pytest-alembic's ``test_up_down_consistency`` compares schema only; these compare the
contents of every table (and alembic_version) before and after each step, except the
tables no downgrade removes (``KEPT_TABLES``: migration_history, which every step appends
to, and the demo data-set record): they are checked on their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from alembic import command

from seed_data.db import REPO_ROOT
from seed_data.migration_history import HISTORY_REVISION, KEPT_TABLES, NOT_RECORDED, ONLINE
from seed_data.refdata.lock import read_lock
from tests.helpers import (
    Step,
    config_for,
    current_revision,
    history_rows,
    history_rows_since,
    insert_account,
    insert_customer,
    revision_steps,
    run_alembic,
    schema_fingerprint,
    snapshot_rows,
    steps_to_cover,
)
from tests.migrator import Migrator

STEPS = revision_steps()
REVISION = {step.file_stem.split("_", 5)[-1]: step.revision for step in STEPS}
CORE_SCHEMA = REVISION["create_core_schema"]
LOOKUPS = REVISION["lookup_values"]
CATALOGUE_2027 = REVISION["catalogue_update_for_2027"]
LOCKED = read_lock(REPO_ROOT / "alembic")


def differing_tables(a: dict[str, list[str]], b: dict[str, list[str]]) -> list[str]:
    return sorted(t for t in a.keys() | b.keys() if a.get(t) != b.get(t))


def history_added(before: Snapshot, after: Snapshot) -> list[tuple[str, str, str, str | None]]:
    """The rows a step appended to migration_history (``after`` was read after ``before``,
    which checked that the step changed and dropped none)."""
    appended = after.history[len(before.history) :]
    return [(r["revision"], r["direction"], r["method"], r["checksum"]) for r in appended]


def expected_history(
    step: Step, direction: str, created: bool
) -> list[tuple[str, str, str, str | None]]:
    """What one online step appends: its own row once the table exists (from the history
    revision on; its downgrade keeps the table); the history revision's upgrade, when it
    ``created`` the table, also marks every revision below it, applied by an earlier run
    here, as not recorded."""
    ancestry = [s.revision for s in STEPS[: STEPS.index(step) + 1]]
    if HISTORY_REVISION not in ancestry:
        return []
    own = [(step.revision, direction, ONLINE, LOCKED[f"{step.file_stem}.py"])]
    if created and direction == "upgrade" and step.revision == HISTORY_REVISION:
        return [(r, "upgrade", NOT_RECORDED, None) for r in ancestry[:-1]] + own
    return own


def without_kept(rows: dict[str, list[str]]) -> dict[str, list[str]]:
    return {table: found for table, found in rows.items() if table not in KEPT_TABLES}


@dataclass(frozen=True)
class Snapshot:
    """A database's contents between two steps: rows and schema (all but the kept tables),
    migration_history, and the other kept tables' rows, each on its own."""

    rows: dict[str, list[str]]
    schema: dict[str, list[str]]
    history: list[dict]
    kept: dict[str, list[str]]

    @classmethod
    def of(cls, conn: sa.Connection, since: Snapshot | None = None) -> Snapshot:
        """Read on an autocommit connection: each statement sees what is committed, and
        holds no lock the next migration step would wait for. After ``since``, only the
        migration_history rows appended since are read (the others must be untouched)."""
        # migration_history is appended to by every step: checked as such.
        rows = snapshot_rows(conn, history=False)
        kept = {t: rows[t] for t in KEPT_TABLES if t in rows}
        history = history_rows_since(conn, since.history) if since else history_rows(conn)
        return cls(without_kept(rows), schema_fingerprint(conn, kept=False), history, kept)


@pytest.mark.history
def test_every_revision_round_trips_rows_and_schema(engine: sa.Engine) -> None:
    """One database walks the history: for every step, downgrade gives back the rows and
    the schema it found, upgrade again gives the rows of the first upgrade, and each upgrade
    and downgrade appends exactly its own migration_history row. One walk, with snapshots
    between the steps, costs one migration per step, not one per step per revision. Its
    connections are pooled, so a step does not pay for new ones."""
    pooled = sa.create_engine(engine.url, pool_size=3)
    migrator = Migrator(pooled)
    steps = steps_to_cover(STEPS)
    if steps[0].down_revision != "base":
        migrator.upgrade(steps[0].down_revision)
    with pooled.connect().execution_options(isolation_level="AUTOCOMMIT") as reader:
        before = Snapshot.of(reader)
        for step in steps:
            before = round_trip(step, migrator, reader, before)
    pooled.dispose()


def round_trip(step: Step, migrator: Migrator, reader: sa.Connection, before: Snapshot) -> Snapshot:
    """Upgrade, downgrade and upgrade again through ``step``; what the database holds after."""
    migrator.upgrade(step.revision)
    first = Snapshot.of(reader, since=before)
    assert_history(step, "upgrade", before, first, created=True)

    migrator.downgrade(step.down_revision)
    downgraded = Snapshot.of(reader, since=first)
    assert_history(step, "downgrade", first, downgraded)
    assert {t: downgraded.kept.get(t) for t in first.kept} == first.kept, (
        f"downgrading {step.file_stem} dropped or changed {', '.join(KEPT_TABLES)}: no"
        " downgrade may remove an operational record (only `-x teardown=yes` does)"
    )
    assert downgraded.schema == before.schema, (
        f"downgrading {step.file_stem} left the schema different in"
        f" {differing_tables(before.schema, downgraded.schema)} (tables, columns, constraints,"
        " indexes, functions, triggers, sequences, types or views): its downgrade() must drop"
        " everything its upgrade() created."
    )
    assert downgraded.rows == before.rows, (
        f"downgrading {step.file_stem} changed rows in"
        f" {differing_tables(before.rows, downgraded.rows)}: its downgrade() must delete"
        " exactly the rows upgrade() inserted and restore every value upgrade() changed, from"
        " constants frozen in the same file."
    )

    migrator.upgrade(step.revision)
    again = Snapshot.of(reader, since=downgraded)
    assert_history(step, "upgrade", downgraded, again)
    assert again.rows == first.rows, (
        f"upgrading {step.file_stem} a second time gave different rows in"
        f" {differing_tables(first.rows, again.rows)}: upgrade() must not depend on state its"
        " downgrade() leaves behind (e.g. sequences or generated ids)."
    )
    assert again.schema == first.schema, (
        f"upgrading {step.file_stem} a second time gave a different schema in"
        f" {differing_tables(first.schema, again.schema)}: upgrade() must not depend on what"
        " its downgrade() leaves behind."
    )
    return again


def assert_history(
    step: Step, direction: str, before: Snapshot, after: Snapshot, created: bool = False
) -> None:
    expected = expected_history(step, direction, created)
    assert history_added(before, after) == expected, (
        f"the {direction} of {step.file_stem} appended other migration_history rows than its"
        " own (env.py records one per step, with the file's checksum from the lock)"
    )


USER_ROWS = {
    "account_statuses": "INSERT INTO account_statuses VALUES ('dormant', 'Dormant', 50)",
    "transaction_categories": "INSERT INTO transaction_categories VALUES ('pets', 'Pets', 170)",
    "products": """
        INSERT INTO products (code, name, account_type_code, description, interest_rate,
                              features, requirements)
        VALUES ('staff_saver', 'Staff Saver', 'savings', 'For colleagues only.', 5.00,
                '["Staff only"]', '["Employed by the bank"]')
    """,
    "faqs": """
        INSERT INTO faqs (slug, question, answer, category, sort_order)
        VALUES ('branch-hours', 'When are branches open?', 'See the branch finder.', 'help', 70)
    """,
}


def user_rows(conn: sa.Connection) -> dict[str, list[str]]:
    rows = snapshot_rows(conn)
    keys = ("'dormant'", "'pets'", "'staff_saver'", "'branch-hours'")
    return {
        table: [row for row in rows[table] if any(k.strip("'") in row for k in keys)]
        for table in USER_ROWS
    }


@pytest.fixture
def catalogue_2027(engine: sa.Engine) -> sa.Engine:
    """A database at the 2027 catalogue update: the downgrades below go through the
    reference revisions up to it, not through every revision after it."""
    command.upgrade(config_for(engine), CATALOGUE_2027)
    return engine


def test_downgrade_leaves_rows_users_added(catalogue_2027: sa.Engine) -> None:
    with catalogue_2027.begin() as conn:
        for sql in USER_ROWS.values():
            conn.execute(sa.text(sql))
    with catalogue_2027.connect() as conn:
        added = user_rows(conn)
    assert all(len(rows) == 1 for rows in added.values())

    # Down to the lookups: the catalogue and FAQ revisions delete only their own keys.
    command.downgrade(config_for(catalogue_2027), LOOKUPS)
    with catalogue_2027.connect() as conn:
        assert user_rows(conn) == added, "a reference downgrade deleted or changed a user's row"
        assert conn.scalar(sa.text("SELECT count(*) FROM products")) == 1
        assert conn.scalar(sa.text("SELECT count(*) FROM faqs")) == 1

    # On through the lookups: the user's own lookup values must outlive them too. (Their
    # product uses the revision's 'savings' type, so it has to go first, or the guard stops us.)
    with catalogue_2027.begin() as conn:
        conn.execute(sa.text("DELETE FROM products WHERE code = 'staff_saver'"))
    command.downgrade(config_for(catalogue_2027), CORE_SCHEMA)
    with catalogue_2027.connect() as conn:
        rows = snapshot_rows(conn)
    assert rows["account_statuses"] == added["account_statuses"]
    assert rows["transaction_categories"] == added["transaction_categories"]
    assert rows["account_types"] == rows["conversation_channels"] == rows["message_roles"] == []


def test_downgrade_blocked_by_business_rows_changes_nothing(catalogue_2027: sa.Engine) -> None:
    config = config_for(catalogue_2027)
    with catalogue_2027.begin() as conn:
        customer = insert_customer(conn, "CUST-000001")
        for number in ("12345678", "12345679"):
            insert_account(conn, customer, number, "easy_access_cash_isa", "cash_isa")
    with catalogue_2027.connect() as conn:
        rows_before, schema_before = snapshot_rows(conn), schema_fingerprint(conn)

    with pytest.raises(Exception, match="cannot downgrade") as raised:
        command.downgrade(config, "-1")
    message = str(raised.value)
    assert "products rows that are still in use" in message
    assert "2 row(s) in accounts.product_code reference easy_access_cash_isa" in message
    assert "This step was rolled back and changed nothing" in message

    with catalogue_2027.connect() as conn:
        assert current_revision(conn) == CATALOGUE_2027
        assert snapshot_rows(conn) == rows_before, "a blocked downgrade must change no rows"
        assert schema_fingerprint(conn) == schema_before, "a blocked downgrade changed schema"


@pytest.mark.slow
def test_blocked_downgrade_cli_says_why_without_a_traceback(catalogue_2027: sa.Engine) -> None:
    with catalogue_2027.begin() as conn:
        customer = insert_customer(conn, "CUST-000002")
        conn.execute(
            sa.text(
                "INSERT INTO conversations (customer_id, channel_code, intent)"
                " VALUES (:customer, 'phone', 'card_lost')"
            ),
            {"customer": customer},
        )
    result = run_alembic("downgrade", "base", url=catalogue_2027.url)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert (
        "FAILED: cannot downgrade: this revision would delete conversation_channels rows that"
        " are still in use (1 row(s) in conversations.channel_code reference phone)"
    ) in result.stdout
    with catalogue_2027.connect() as conn:
        # Each revision is its own transaction: the steps before the blocked one stay done.
        assert current_revision(conn) == LOOKUPS
        assert conn.scalar(sa.text("SELECT count(*) FROM conversation_channels")) == 4
