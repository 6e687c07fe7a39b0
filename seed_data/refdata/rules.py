"""The database's own rules, asked of the database: each declared row tried in a scratch copy.

Loading the files checks what the models say (types, lengths, ranges, UNIQUE). A table
can hold more than that: CHECK constraints, unique indexes made by hand in a migration,
triggers, domains. Rather than keep a second copy of those rules here, every declared row
is inserted into its real table in the scratch database (emptied inside a transaction
that is rolled back). A table's rows go in one statement under a savepoint; if the
database refuses it, the rows are halved and tried again, down to the single rows it
refuses, so that each refusal names its own row and the constraint it broke, and a table
of 20,000 good rows costs one statement, not 20,000. A row whose lookup was refused is
skipped rather than reported again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import URL

from seed_data.db_errors import classify, driver_error, first_line, sqlstate
from seed_data.refdata.declared import Declared, Row, Rows
from seed_data.refdata.errors import database_refusal
from seed_data.refdata.tables import RefColumn, RefTable

CHECK_VIOLATION, UNIQUE_VIOLATION = "23514", "23505"
KEY_DETAIL = re.compile(r"Key \((?P<columns>[^()]*)\)=\((?P<values>.*)\) (already exists|is not)")


def rule_problems(engine: sa.Engine, tables: tuple[RefTable, ...], declared: Declared) -> list[str]:
    """``file:line: ...`` for every declared row the database's rules refuse."""
    problems: list[str] = []
    refused: dict[str, set[str]] = {t.name: set() for t in tables}
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            names = ", ".join(conn.dialect.identifier_preparer.quote(t.name) for t in tables)
            conn.exec_driver_sql(f"TRUNCATE {names} CASCADE")
            for table in tables:
                rows = [
                    (key, row)
                    for key, row in declared[table.name].items()
                    if not any(
                        row[c.name] in refused.get(c.references, ()) for c in _lookups(table)
                    )
                ]
                for key, error in _refused_rows(conn, table, rows, engine.url):
                    refused[table.name].add(key)
                    problems.append(explain(conn, error, table, key, declared))
            transaction.rollback()
    except sa.exc.DBAPIError as error:
        raise database_refusal(
            "cannot try the declared rows in the scratch database", error, engine.url
        ) from None
    return problems


def _refused_rows(
    conn: sa.Connection, table: RefTable, rows: list[tuple[str, Row]], url: URL
) -> list[tuple[str, sa.exc.DBAPIError]]:
    """Insert ``rows`` in one statement; if the database refuses it, each half in turn, down
    to the single rows it refuses (which, with their errors, are returned in order)."""
    if not rows:
        return []
    try:
        with conn.begin_nested():
            conn.execute(_insert(table, [row for _, row in rows]))
        return []
    except sa.exc.DBAPIError as error:
        if classify(error, url) is not None:
            raise  # not about these rows: the database itself is unusable
        if len(rows) == 1:
            return [(rows[0][0], error)]
    middle = len(rows) // 2
    return _refused_rows(conn, table, rows[:middle], url) + _refused_rows(
        conn, table, rows[middle:], url
    )


def _insert(table: RefTable, rows: list[Row]) -> sa.Insert:
    """One INSERT of every row, sent as a single JSON document (decimals as exact text)."""
    columns = [sa.column(c.name, c.type) for c in table.columns]
    document = json.dumps(rows, default=str, ensure_ascii=False)
    recordset = sa.func.json_to_recordset(sa.cast(sa.literal(document, sa.Text), sa.JSON))
    source = recordset.table_valued(*columns).render_derived("r", with_types=True)
    target = sa.table(table.name, *columns)
    return target.insert().from_select(table.column_names, sa.select(*source.c))


def _lookups(table: RefTable) -> Iterable[RefColumn]:
    return [c for c in table.columns if c.references]


def explain(
    conn: sa.Connection, error: sa.exc.DBAPIError, table: RefTable, key: str, declared: Declared
) -> str:
    """``file:line: <what> breaks <rule>``: the declared row, the constraint and what it says."""
    diag = getattr(error.orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    columns = [getattr(diag, "column_name", None)] if getattr(diag, "column_name", None) else []
    definition = None
    if constraint:
        definition, columns = _constraint(conn, table.name, constraint, columns)
    column = columns[0] if len(columns) == 1 else None
    where = declared.where(table.name, key, column)
    said = first_line(error)
    if sqlstate(error) == CHECK_VIOLATION and definition:
        shown = (
            f"{column} {declared[table.name][key][column]!r}" if column else f"{table.key} {key!r}"
        )
        return f"{where}: {shown} breaks {constraint}: {definition}"
    if sqlstate(error) == UNIQUE_VIOLATION:
        other = _other_row(error, table, key, declared)
        also = f" (also declared at {other})" if other else ""
        return f"{where}: {table.key} {key!r} breaks {constraint}: {_detail(error)}{also}"
    return f"{where}: {table.key} {key!r}: {said}"


def _constraint(
    conn: sa.Connection, table: str, name: str, columns: list[str]
) -> tuple[str | None, list[str]]:
    """A constraint's definition and columns (or a unique index's), as the database has them."""
    row = conn.execute(
        sa.text("""
            SELECT pg_get_constraintdef(c.oid) AS definition,
                   array(SELECT a.attname FROM pg_attribute AS a
                         WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
                         ORDER BY a.attnum) AS columns
            FROM pg_constraint AS c
            WHERE c.conname = :name AND c.conrelid = CAST(:table AS regclass)
            UNION ALL
            SELECT pg_get_indexdef(i.indexrelid), array(
                       SELECT a.attname FROM pg_attribute AS a
                       WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                       ORDER BY a.attnum)
            FROM pg_index AS i
            WHERE i.indexrelid = to_regclass(quote_ident(:name))
                AND i.indrelid = CAST(:table AS regclass)
            LIMIT 1
        """),
        {"name": name, "table": table},
    ).first()
    if row is None:
        return None, columns
    return row.definition, list(row.columns) or columns


def _detail(error: BaseException) -> str:
    detail = getattr(getattr(driver_error(error), "diag", None), "message_detail", None)
    return detail or first_line(error)


def _other_row(error: BaseException, table: RefTable, key: str, declared: Declared) -> str | None:
    """The declared row already holding the value a unique violation names, if one does."""
    column, keys = rows_named(error, table, declared[table.name])
    others = [k for k in keys if k != key]
    return declared.where(table.name, others[0], column) if others else None


def rows_named(error: BaseException, table: RefTable, rows: Rows) -> tuple[str | None, list[str]]:
    """The column and the rows an error's ``Key (column)=(value)`` detail points at."""
    match = KEY_DETAIL.match(_detail(error))
    if match is None or match["columns"] not in table.column_names:
        return None, []
    column = match["columns"]
    return column, [k for k, row in rows.items() if str(row[column]) == match["values"]]
