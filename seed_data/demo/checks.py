"""What is checked about the database before the loader writes anything.

A refusal after a partial write is data loss, so everything that can be known up front
is: the database is writable, the migrations are at head, the role holds every privilege
the run needs, the tables have the columns the loader writes, and the demo data already
there belongs to the same data set. Each problem is one line, raised as :class:`Refused`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.engine import URL

from seed_data.db import redact
from seed_data.db_errors import ADVICE
from seed_data.demo.data_set import DataSet, differences
from seed_data.demo.demo_rows import DemoCustomers
from seed_data.demo.generate import COLUMNS, TABLES
from seed_data.demo.reference import NotAtHead, assert_at_head

DATA_SET_TABLE = "demo_data_set"


class Refused(Exception):
    """The run cannot start: one line saying why and what to do. Nothing was written."""


def check_database(cursor: Any, url: URL, *, load: bool, clear: bool) -> None:
    """Raise :class:`Refused` unless a run that loads and/or clears can succeed here."""
    database = redact(url)
    # Writability first: on a standby the revision does not matter (nothing can be written
    # there), and `alembic upgrade head`, the advice for a database behind, fails there.
    cursor.execute("SELECT current_setting('transaction_read_only')")
    if cursor.fetchone()[0] == "on":
        raise Refused(f"{database} is read-only: {ADVICE['read-only']}")
    try:
        assert_at_head(cursor)
    except NotAtHead as error:
        raise Refused(f"{database}: {error}") from None
    _check_privileges(cursor, database, _privileges_needed(load=load, clear=clear))
    if load:
        _check_columns(cursor, database)


def _privileges_needed(*, load: bool, clear: bool) -> dict[str, list[str]]:
    needed: dict[str, list[str]] = {}
    for table in (*TABLES, DATA_SET_TABLE):
        privileges = ["SELECT"]
        if load:
            privileges += ["INSERT", "UPDATE"] if table == DATA_SET_TABLE else ["INSERT"]
        if clear:
            privileges.append("DELETE")
        needed[table] = privileges
    return needed


def _check_privileges(cursor: Any, database: str, needed: dict[str, list[str]]) -> None:
    pairs = [(table, privilege) for table, privileges in needed.items() for privilege in privileges]
    cursor.execute(
        "SELECT current_user, t, p FROM unnest(%s::text[], %s::text[]) AS x (t, p) "
        "WHERE NOT has_table_privilege(t, p)",
        ([t for t, _ in pairs], [p for _, p in pairs]),
    )
    missing = cursor.fetchall()
    if missing:
        role = missing[0][0]
        lacking = ", ".join(f"{privilege} on {table}" for _, table, privilege in missing)
        raise Refused(
            f"{database}: role {role} lacks {lacking}; grant {'it' if len(missing) == 1 else 'them'}, "
            "or use a role that has them"
        )


def _check_columns(cursor: Any, database: str) -> None:
    cursor.execute(
        "SELECT attrelid::regclass::text, attname FROM pg_attribute "
        "WHERE attrelid = ANY(%s::regclass[]) AND attnum > 0 AND NOT attisdropped",
        (list(TABLES),),
    )
    present = set(cursor.fetchall())
    missing = [
        f"{table}.{column}"
        for table, columns in COLUMNS.items()
        for column in columns
        if (table, column) not in present
    ]
    if missing:
        raise Refused(
            f"{database}: the demo data needs column(s) {', '.join(missing)}, which the "
            "database lacks although it is at head: it was changed outside the migrations; "
            "restore the column(s) or rebuild the database with `alembic upgrade head`"
        )


def check_same_data_set(
    database: str, present: DemoCustomers, recorded: DataSet | None, wanted: DataSet
) -> None:
    """Refuse to add customers to demo data generated with other parameters."""
    if not present.count:
        return
    if recorded is None:
        raise Refused(
            f"{database} holds {present.count:,} demo customer(s) but no record of the "
            "parameters they were generated with (an older version of this script loaded "
            "them, or the record was removed), so this run cannot tell whether its "
            "customers would match: add --clear to replace them with this run's data set"
        )
    if recorded != wanted:
        # Only when seed or as-of alone differ can this checkout add to the existing set.
        same_otherwise = recorded == replace(wanted, seed=recorded.seed, as_of=recorded.as_of)
        existing = f"; {recorded.options()} adds to the existing set" if same_otherwise else ""
        raise Refused(
            f"{database} holds {present.count:,} demo customer(s) of another data set: "
            f"{'; '.join(differences(recorded, wanted))}. Adding this run's customers would "
            "mix the two: add --clear to replace them with this run's data set, or load "
            f"into another database{existing}"
        )
