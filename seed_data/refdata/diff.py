"""Differences between two states of the reference tables, and how to print them."""

from __future__ import annotations

from dataclasses import dataclass, field

from seed_data.refdata.declared import Row, Rows
from seed_data.refdata.tables import RefTable


@dataclass
class TableDiff:
    """What it takes to go from one state of a table (``before``) to another (``after``)."""

    table: RefTable
    added: list[Row] = field(default_factory=list)  # rows only ``after`` has
    removed: list[Row] = field(default_factory=list)  # rows only ``before`` has, in full
    # key -> (the changed fields before, the same fields after)
    changed: dict[str, tuple[Row, Row]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def diff_table(table: RefTable, before: Rows, after: Rows) -> TableDiff:
    diff = TableDiff(table)
    diff.added = [row for key, row in after.items() if key not in before]
    diff.removed = [row for key, row in before.items() if key not in after]
    for key, new in after.items():
        old = before.get(key)
        if old is None:
            continue
        fields = [c for c in table.column_names if old[c] != new[c]]
        if fields:
            diff.changed[key] = ({c: old[c] for c in fields}, {c: new[c] for c in fields})
    return diff


def diff_all(
    tables: tuple[RefTable, ...], before: dict[str, Rows], after: dict[str, Rows]
) -> list[TableDiff]:
    """The non-empty differences, in the tables' dependency order."""
    diffs = [diff_table(t, before.get(t.name, {}), after.get(t.name, {})) for t in tables]
    return [d for d in diffs if d]


def describe(diffs: list[TableDiff], before: str, after: str) -> str:
    """A readable report: ``+`` rows to add, ``-`` rows to remove, ``~`` fields to change."""
    lines = []
    for diff in diffs:
        key = diff.table.key
        counts = f"{len(diff.added)} to add, {len(diff.removed)} to remove, {len(diff.changed)} to change"
        lines.append(f"{diff.table.name}: {counts} ({before} -> {after})")
        lines += [f"  + {row[key]}: {_fields(row, key)}" for row in diff.added]
        lines += [f"  - {row[key]}" for row in diff.removed]
        for code, (old, new) in diff.changed.items():
            lines.append(f"  ~ {code}")
            lines += [f"      {name}: {old[name]!r} -> {new[name]!r}" for name in old]
    return "\n".join(lines)


def _fields(row: Row, key: str) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in row.items() if name != key)
