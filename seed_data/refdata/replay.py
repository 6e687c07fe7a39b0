"""The history replayed one revision at a time in a scratch database, and what each step did
to the reference rows: hand-written revisions count as well as generated ones, because the
rows are read from the database after every step, not from the revision files.

The whole replay is one ``alembic upgrade``: the rows are read inside each step's own
transaction (env.py's ``on_version_apply`` hook), so a step costs what the revision does
plus one read, not an alembic run of its own. A caller that needs one row reads one row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import Script

from seed_data.refdata.declared import Row, Rows
from seed_data.refdata.state import migrate_scratch, read_rows
from seed_data.refdata.tables import RefTable

Reader = Callable[[sa.Connection], dict[str, Rows]]

ADDED, CHANGED, REMOVED = "added", "changed", "removed"


@dataclass(frozen=True)
class RowChange:
    """What one step (or a run of steps) did to one row: fields before and after it."""

    table: str
    key: str
    before: Row | None  # None: the row did not exist
    after: Row | None

    @property
    def kind(self) -> str:
        return ADDED if self.before is None else REMOVED if self.after is None else CHANGED

    def fields(self) -> dict[str, tuple[object, object]]:
        """name -> (before, after), only the fields that differ (every field when the row
        was added or removed; a column the table lacked on one side shows as None)."""
        before, after = self.before or {}, self.after or {}
        names = [*before, *(name for name in after if name not in before)]
        return {
            name: (before.get(name), after.get(name))
            for name in names
            if self.kind != CHANGED or before.get(name) != after.get(name)
        }


def row_changes(
    tables: Sequence[RefTable], before: dict[str, Rows], after: dict[str, Rows]
) -> list[RowChange]:
    """Every row that differs between two states, tables in the order given, keys sorted."""
    changes = []
    for table in tables:
        old, new = before.get(table.name, {}), after.get(table.name, {})
        for key in sorted(old.keys() | new.keys()):
            if old.get(key) != new.get(key):
                changes.append(RowChange(table.name, key, old.get(key), new.get(key)))
    return changes


@dataclass(frozen=True)
class Step:
    """One revision applied to the scratch database, and the rows around it."""

    script: Script
    before: dict[str, Rows]
    after: dict[str, Rows]

    def changes(self, tables: Sequence[RefTable]) -> list[RowChange]:
        return row_changes(tables, self.before, self.after)


def rows_now(engine: sa.Engine, tables: Sequence[RefTable]) -> dict[str, Rows]:
    with engine.connect() as conn:
        return all_rows(tables)(conn)


def all_rows(tables: Sequence[RefTable]) -> Reader:
    """Reads every row of ``tables``, as a database at any revision has them."""
    return lambda conn: read_rows(conn, tuple(tables), as_they_are=True)


def one_row(table: RefTable, key: str) -> Reader:
    """Reads the row of ``table`` with this key (the table may not exist yet), with the
    columns the table has at that revision."""

    def read(conn: sa.Connection) -> dict[str, Rows]:
        if conn.scalar(sa.select(sa.func.to_regclass(table.name))) is None:
            return {table.name: {}}
        found = sa.table(table.name, sa.column(table.key)).alias("t")
        text = conn.scalar(
            sa.select(sa.func.to_jsonb(sa.literal_column("t")).cast(sa.Text))
            .select_from(found)
            .where(found.c[table.key] == key)
        )
        if text is None:
            return {table.name: {}}
        row = json.loads(text, parse_float=Decimal)
        return {table.name: {key: {n: row[n] for n in table.column_names if n in row}}}

    return read


def replay(
    engine: sa.Engine, config: Config, revisions: Sequence[Script], read: Reader
) -> list[Step]:
    """Upgrade the scratch database through ``revisions`` in one run, calling ``read``
    before the first and inside each step's transaction, after the step."""
    if not revisions:
        return []
    with engine.connect() as conn:
        before = read(conn)
    reads: list[tuple[str, dict[str, Rows]]] = []

    def after_step(*, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        if step.is_upgrade and not step.is_stamp:
            reads.append((step.up_revision_id, read(ctx.connection)))

    doing = "cannot replay the history on a scratch database"
    migrate_scratch(engine, config, revisions[-1].revision, doing, on_step=after_step)
    scripts = {script.revision: script for script in revisions}
    steps = []
    for revision, after in reads:
        steps.append(Step(scripts[revision], before, after))
        before = after
    return steps


def value_text(value: object) -> str:
    """A field's value as people read it: 3.50, true, null, 'text', ['a', 'b']."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    return repr(value)


def value_json(value: object) -> object:
    """A field's value for JSON: numbers with decimals as text, so none is rounded."""
    return str(value) if isinstance(value, Decimal) else value


def change_lines(change: RowChange, indent: str) -> list[str]:
    """``added`` / ``removed`` with every field, or each changed field ``before -> after``."""
    fields = change.fields()
    if change.kind == CHANGED:
        return [
            f"{indent}{name}: {value_text(a)} -> {value_text(b)}" for name, (a, b) in fields.items()
        ]
    values = {name: b if change.kind == ADDED else a for name, (a, b) in fields.items()}
    return [
        f"{indent}{change.kind}",
        *(f"{indent}  {n}: {value_text(v)}" for n, v in values.items()),
    ]
