"""The history replayed one revision at a time in a scratch database, and what each step did
to the reference rows: hand-written revisions count as well as generated ones, because the
rows are read from the database after every step, not from the revision files."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import Script

from seed_data.refdata.declared import Row, Rows
from seed_data.refdata.state import migrate_scratch, read_rows
from seed_data.refdata.tables import RefTable

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
        return read_rows(conn, tuple(tables), as_they_are=True)


def replay(
    engine: sa.Engine, config: Config, revisions: Sequence[Script], tables: Sequence[RefTable]
) -> Iterator[Step]:
    """Upgrade the scratch database one revision at a time, reading ``tables`` after each."""
    before = rows_now(engine, tables)
    for script in revisions:
        doing = f"cannot replay revision {script.revision} on a scratch database"
        migrate_scratch(engine, config, script.revision, doing)
        after = rows_now(engine, tables)
        yield Step(script, before, after)
        before = after


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
