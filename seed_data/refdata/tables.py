"""What the toolkit knows about each reference table, read off the models at head."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from seed_data.models import REFERENCE_TABLES, Base
from seed_data.refdata.errors import BadInput


@dataclass(frozen=True)
class RefColumn:
    name: str
    type: sa.types.TypeEngine
    nullable: bool
    references: str | None  # the reference table this column points at, if any


@dataclass(frozen=True)
class Unique:
    """A UNIQUE constraint or unique index other than the primary key."""

    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class RefTable:
    name: str
    key: str  # the natural key: code or slug
    columns: tuple[RefColumn, ...]
    uniques: tuple[Unique, ...] = ()

    def column(self, name: str) -> RefColumn:
        return next(c for c in self.columns if c.name == name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def depends_on(self) -> set[str]:
        return {c.references for c in self.columns if c.references}

    @property
    def can_retire(self) -> bool:
        """Rows can be withdrawn without deleting them (``is_active: false``)."""
        return "is_active" in self.column_names


def reference_tables() -> tuple[RefTable, ...]:
    """Every reference table, parents before the tables whose rows point at them."""
    tables = [t for t in Base.metadata.sorted_tables if t.name in REFERENCE_TABLES]
    return tuple(_describe(table) for table in tables)


def _describe(table: sa.Table) -> RefTable:
    keys = list(table.primary_key.columns)
    if len(keys) != 1 or not isinstance(keys[0].type, sa.String):
        shown = ", ".join(f"{c.name} {c.type}" for c in keys) or "none"
        raise BadInput(
            f"seed_data/models.py: {table.name} is marked as reference data, but its primary "
            f"key is ({shown}): a reference table is keyed by one text column, its natural "
            "key (code, slug); see docs/reference-data.md#adding-a-reference-table"
        )
    (key,) = keys
    columns = []
    for column in table.columns:
        targets = {fk.column.table.name for fk in column.foreign_keys}
        columns.append(
            RefColumn(
                column.name,
                column.type,
                bool(column.nullable),
                next((t for t in targets if t in REFERENCE_TABLES), None),
            )
        )
    uniques = [
        Unique(str(c.name), tuple(col.name for col in c.columns))
        for c in table.constraints
        if isinstance(c, sa.UniqueConstraint)
    ]
    uniques += [
        Unique(str(i.name), tuple(col.name for col in i.columns))
        for i in table.indexes
        if i.unique and i.columns
    ]
    return RefTable(
        table.name, key.name, tuple(columns), tuple(sorted(uniques, key=lambda u: u.name))
    )


def referenced(table: str) -> bool:
    """Whether any table's foreign key points at ``table`` (its rows may be in use)."""
    return any(
        fk.column.table.name == table
        for other in Base.metadata.tables.values()
        for fk in other.foreign_keys
    )


def missing_at_head(conn: sa.Connection, tables: tuple[RefTable, ...]) -> str | None:
    """What the models mark as reference data that a database at head lacks (a table, or
    a column), as one line saying what to write; None when nothing is missing."""
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    for table in tables:
        if table.name not in present:
            return (
                f"{table.name} is marked as reference data in seed_data/models.py, but the "
                "migrations' head has no such table: write the schema revision that creates "
                "it first (`alembic revision -m ...`, see docs/schema-revisions.md), then run "
                "this again"
            )
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        if missing := [name for name in table.column_names if name not in columns]:
            return (
                f"{table.name} has column {', '.join(missing)} in seed_data/models.py, but not "
                "at the migrations' head: write the schema revision that adds it first "
                "(see docs/schema-revisions.md), then run this again"
            )
    return None
