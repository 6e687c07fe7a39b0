"""``check --live``: a live database (production, say) against head, read-only.

Five questions, in one read-only transaction with a short lock timeout (so a migration
holding a lock makes the check fail fast instead of queueing behind it):

* is the database at this checkout's head (or at a revision this checkout does not know)?
* did it run the text of each revision this checkout has (its migration_history's
  checksums against the files)?
* does it still have every reference table and column head has?
* are its reference rows head's rows (nobody edited them outside the migrations)?
* do business rows still use a row the declared files remove? A revision deleting it
  would stop at upgrade; better to hear now, with the rows named, and retire the row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from seed_data.db import redact
from seed_data.environment import WRITABILITY_QUERY, upgrade_advice
from seed_data.models import REFERENCE_TABLES
from seed_data.refdata.applied import history_findings, read_history
from seed_data.refdata.declared import Rows
from seed_data.refdata.diff import describe, diff_all
from seed_data.refdata.errors import BadInput, database_refusal
from seed_data.refdata.state import current_revisions, read_rows
from seed_data.refdata.tables import RefTable

LOCK_TIMEOUT = "5s"
SAMPLE_IDS = 5

# Foreign keys into a table (composite ones, and ones to columns other than the key,
# included), each partitioned table once: the same rows refdata_assert_unreferenced()
# checks, found without its row locks so that a read-only role can ask.
FOREIGN_KEYS_INTO = """
SELECT c.conrelid::regclass::text AS child,
    array_agg(child.attname::text ORDER BY k.position) AS child_columns,
    array_agg(parent.attname::text ORDER BY k.position) AS parent_columns,
    array(
        SELECT a.attname::text FROM pg_index AS i
        JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = c.conrelid AND i.indisprimary
    ) AS primary_key
FROM pg_constraint AS c
CROSS JOIN LATERAL unnest(c.conkey, c.confkey)
    WITH ORDINALITY AS k (child_attnum, parent_attnum, position)
JOIN pg_attribute AS child ON child.attrelid = c.conrelid AND child.attnum = k.child_attnum
JOIN pg_attribute AS parent ON parent.attrelid = c.confrelid AND parent.attnum = k.parent_attnum
WHERE c.contype = 'f' AND c.confrelid = CAST(:table AS regclass) AND c.conparentid = 0
GROUP BY c.oid, c.conrelid
ORDER BY 1, 2
"""


@contextmanager
def read_only(url: URL, doing: str) -> Iterator[sa.Connection]:
    """A read-only transaction on ``url`` with a short lock timeout; a server error in it
    is one line: ``doing <url, masked>: what happened``."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            yield conn
    except sa.exc.DBAPIError as error:
        raise database_refusal(f"{doing} {redact(url)}", error, url) from None
    finally:
        engine.dispose()


def known_revisions(conn: sa.Connection, script: ScriptDirectory, shown: str) -> set[str]:
    """The database's revisions, all of which this checkout must have."""
    revisions = current_revisions(conn)
    known = {s.revision for s in script.walk_revisions()}
    if unknown := sorted(revisions - known):
        raise BadInput(
            f"{shown} is at revision {', '.join(unknown)}, which this checkout does not "
            "have (a newer release or another branch migrated it): check out the code "
            "that database runs, then check again"
        )
    return revisions


def live_problems(
    url: URL,
    script: ScriptDirectory,
    head: str,
    head_rows: dict[str, Rows],
    declared: dict[str, Rows],
    tables: tuple[RefTable, ...],
) -> tuple[list[str], list[str]]:
    """(drift, notes): what differs between the live database and head (and the declared
    files' plans), and which text of each revision it ran (its migration_history)."""
    shown = redact(url)
    with read_only(url, "cannot check") as conn:
        revisions = known_revisions(conn, script, shown)
        problems, notes = history_findings(read_history(conn), script, revisions, shown)
        if revisions != {head}:
            standby, locked = conn.execute(sa.text(WRITABILITY_QUERY)).one()
            problems.append(
                f"{shown} is at {', '.join(sorted(revisions)) or 'no revision'}, head is "
                f"{head}: {upgrade_advice(standby, locked)}"
            )
            return problems, notes
        return problems + _compare(conn, shown, head_rows, declared, tables), notes


def _compare(
    conn: sa.Connection,
    shown: str,
    head_rows: dict[str, Rows],
    declared: dict[str, Rows],
    tables: tuple[RefTable, ...],
) -> list[str]:
    problems = []
    gaps = _schema_gaps(conn, tables)
    if gaps:
        problems.append(
            f"{shown} lacks what head has (changed outside the migrations): "
            f"{'; '.join(gaps.values())}. Restore it as the migrations made it (rows of "
            "those tables were not compared)"
        )
    whole = tuple(t for t in tables if t.name not in gaps)
    if diffs := diff_all(whole, head_rows, read_rows(conn, whole)):
        problems.append(
            f"{shown} has reference rows that differ from head (edited outside the "
            "migrations):\n" + describe(diffs, "head", "live")
        )
    for table in whole:
        removed = sorted(set(head_rows[table.name]) - set(declared[table.name]))
        if removed and (uses := references(conn, table, removed)):
            retire = " and retire them (is_active: false) instead" if table.can_retire else ""
            problems.append(
                f"the declared files remove {table.name} rows that {shown} still uses "
                f"({'; '.join(uses)}): a revision deleting them would stop during the "
                f"upgrade. Keep them declared{retire}, or re-point those rows first"
            )
    return problems


def _schema_gaps(conn: sa.Connection, tables: tuple[RefTable, ...]) -> dict[str, str]:
    inspector = sa.inspect(conn)
    gaps = {}
    for table in tables:
        if not inspector.has_table(table.name):
            gaps[table.name] = f"no table {table.name}"
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        if missing := [name for name in table.column_names if name not in present]:
            gaps[table.name] = f"{table.name} has no column {', '.join(missing)}"
    return gaps


def references(conn: sa.Connection, table: RefTable, keys: list[str]) -> list[str]:
    """Business rows that use these rows: ``2 row(s) in accounts.product_code reference x (id 7, 9)``."""
    quote = conn.dialect.identifier_preparer.quote
    uses = []
    for fk in conn.execute(sa.text(FOREIGN_KEYS_INTO), {"table": quote(table.name)}):
        if fk.child.split(".")[-1].strip('"') in REFERENCE_TABLES:
            continue  # declared rows: the files' own validation covers them
        join = " AND ".join(
            f"child.{quote(a)} = parent.{quote(b)}"
            for a, b in zip(fk.child_columns, fk.parent_columns, strict=True)
        )
        key = f"parent.{quote(table.key)}::text"
        pk = fk.primary_key[0] if len(fk.primary_key) == 1 else None
        sample = (
            f"(array_agg(child.{quote(pk)}::text ORDER BY child.{quote(pk)}))[1:{SAMPLE_IDS}]"
            if pk
            else "NULL::text[]"
        )
        count, used, ids = conn.execute(
            sa.text(
                f"SELECT count(*), array_agg(DISTINCT {key} ORDER BY {key}), {sample} "
                f"FROM {fk.child} AS child JOIN {quote(table.name)} AS parent ON {join} "
                f"WHERE {key} = ANY(:keys)"
            ),
            {"keys": keys},
        ).one()
        if count:
            columns = ", ".join(fk.child_columns)
            where = (
                f"{fk.child}.{columns}" if len(fk.child_columns) == 1 else f"{fk.child} ({columns})"
            )
            more = ", ..." if count > len(ids or ()) else ""
            example = f" ({pk} {', '.join(ids)}{more})" if ids else ""
            uses.append(f"{count} row(s) in {where} reference {', '.join(used)}{example}")
    return uses
