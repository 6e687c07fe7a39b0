"""Differences between two states of the reference tables, and how to print them."""

from __future__ import annotations

from dataclasses import dataclass, field

from seed_data.refdata.declared import Row, Rows
from seed_data.refdata.tables import RefTable

SHOWN_ROWS = 20


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
    """A readable report: ``+`` rows to add, ``-`` rows to remove, ``~`` fields to change,
    the first :data:`SHOWN_ROWS` of each kind per table (the revision has them all)."""
    lines = []
    for diff in diffs:
        key = diff.table.key
        counts = (
            f"{len(diff.added):,} to add, {len(diff.removed):,} to remove, "
            f"{len(diff.changed):,} to change"
        )
        lines.append(f"{diff.table.name}: {counts} ({before} -> {after})")
        added = [
            f"  + {key_text(row[key])}: {_fields(row, key)}" for row in diff.added[:SHOWN_ROWS]
        ]
        lines += _capped(added, len(diff.added), "to add")
        removed = [f"  - {key_text(row[key])}" for row in diff.removed[:SHOWN_ROWS]]
        lines += _capped(removed, len(diff.removed), "to remove")
        changed = []
        for code, (old, new) in list(diff.changed.items())[:SHOWN_ROWS]:
            changed.append(f"  ~ {key_text(code)}")
            changed += [f"      {name}: {old[name]!r} -> {new[name]!r}" for name in old]
        lines += _capped(changed, len(diff.changed), "to change")
    return "\n".join(lines)


def _capped(lines: list[str], total: int, kind: str) -> list[str]:
    if total <= SHOWN_ROWS:
        return lines
    return [*lines, f"  ... and {total - SHOWN_ROWS:,} more {kind}"]


def key_text(key: str) -> str:
    """A key as a reader can tell it from any other: as written when every character is
    plain to see (printable ASCII, or a letter such as é), else quoted with escapes (a
    no-break space shows as \\xa0, a leading space as ' x')."""
    plain = all((" " <= c <= "~") or c.isalpha() for c in key)
    return key if plain and key == key.strip() and key else repr(key)


def _fields(row: Row, key: str) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in row.items() if name != key)
