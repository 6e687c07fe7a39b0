"""Forked history: do the heads change the same reference rows, and does the order in which a
database applies them matter?

Each head is replayed, one revision at a time, from the heads' common ancestor (the merge
base) in a copy of a scratch database at that ancestor; what each head changed is compared
per field (table, key and column). A field two heads change is a conflict: the value a
database ends with would depend on which head it applied first. Two heads that change
different fields of one row are not (each revision updates only the fields it changes); a
row one head adds or removes conflicts with any change to it on another. Each copy then applies the other heads
too, so every head is applied first once: if the final rows differ (a hand-written
revision that updates every product, and another that adds one), that is a conflict as
well, even though no row is changed on two heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from sqlalchemy.engine import URL

from seed_data.refdata.declared import Rows
from seed_data.refdata.diff import key_text
from seed_data.refdata.files import shown
from seed_data.refdata.heads import lineage, merge_base, upgrade_path
from seed_data.refdata.replay import (
    RowChange,
    all_rows,
    change_lines,
    replay,
    row_changes,
    rows_now,
    value_text,
)
from seed_data.refdata.state import migrate_scratch, scratch_database
from seed_data.refdata.tables import RefTable, reference_tables

RESOLVE = (
    "To resolve it, keep one head's revision, delete the other's file if it was never "
    "released (`git rm FILE`, then `refdata.py lock --forget FILE`) and write its changes "
    "again on top (`refdata.py revision`); if both were released already, merge with "
    "`alembic merge heads` and add a revision that sets those rows to the values agreed"
)


@dataclass(frozen=True)
class HeadChange:
    """A row one head changed since the common ancestor: the net change, the last revision
    on the way that touched it, and, per field, every revision that changed that field (an
    added or removed row: every field)."""

    head: str
    script: Script
    change: RowChange
    touched_by: dict[str, frozenset[str]]


@dataclass
class HeadsReport:
    base: str
    heads: list[str]
    # head -> the head and every revision below it
    lineages: dict[str, set[str]] = field(default_factory=dict)
    # head -> (table, key) -> what that head did to the row
    changes: dict[str, dict[tuple[str, str], HeadChange]] = field(default_factory=dict)
    # how the rows differ when the heads are applied in different orders (None: they don't)
    order_difference: str | None = None

    def conflicts(self) -> list[list[HeadChange]]:
        """Rows two heads change, each with those heads' changes.

        With three heads or more, two of them can share revisions above the common
        ancestor (a branch that forked again): a row only such a shared revision touched
        is not a conflict between those two.
        """
        by_row: dict[tuple[str, str], list[HeadChange]] = {}
        for head in self.heads:
            for row, change in self.changes[head].items():
                by_row.setdefault(row, []).append(change)
        conflicts = []
        for _, changes in sorted(by_row.items()):
            clashing = [a for a in changes if any(self._clash(a, b) for b in changes)]
            if clashing:
                conflicts.append(clashing)
        return conflicts

    def _clash(self, a: HeadChange, b: HeadChange) -> bool:
        """Each head changed a field of the row in a revision the other head does not have."""
        return a.head != b.head and any(
            revisions - self.lineages[b.head]
            and b.touched_by.get(name, frozenset()) - self.lineages[a.head]
            for name, revisions in a.touched_by.items()
        )

    def problems(self, versions: Path) -> list[str]:
        """What ``check`` and ``merge`` report: the conflicts, or that merging is safe."""
        listed = ", ".join(self.heads)
        if conflicts := self.conflicts():
            lines = [
                f"the heads {listed} change the same fields of reference rows since their common "
                f"ancestor {self.base}, so the rows a database ends with depend on the head it "
                f"applies first. {RESOLVE}:"
            ]
            for changes in conflicts:
                lines.append(f"  {changes[0].change.table} {key_text(changes[0].change.key)}")
                for head_change in changes:
                    name = Path(head_change.script.path).name
                    lines.append(
                        f"    head {head_change.head}, in revision "
                        f"{head_change.script.revision} ({name}):"
                    )
                    lines += change_lines(head_change.change, "      ")
            return ["\n".join(lines)]
        if self.order_difference is not None:
            return [
                f"the heads {listed} change different reference rows, but give different "
                f"rows depending on which one a database applies first "
                f"({self.order_difference}). {RESOLVE}"
            ]
        return [
            f"{shown(versions)} has {len(self.heads)} heads ({listed}) that change different "
            f"reference rows or fields since their common ancestor {self.base}, and give the "
            "same rows in either order: safe to merge: run `refdata.py merge -m MSG`"
        ]

    @property
    def safe(self) -> bool:
        return not self.conflicts() and self.order_difference is None


def analyse_heads(
    server: URL, config: Config, script: ScriptDirectory, heads: list[str]
) -> HeadsReport:
    """Replay every head from the common ancestor in scratch databases on ``server``."""
    base = merge_base(script, heads)
    report = HeadsReport(base, sorted(heads), {head: lineage(script, head) for head in heads})
    tables = reference_tables()
    finals: list[tuple[str, dict[str, Rows]]] = []
    with scratch_database(server, config, target=base) as at_base:
        base_rows = rows_now(at_base, tables)
        for head in report.heads:
            with scratch_database(server, config, target=None, copy_of=at_base) as copy:
                report.changes[head] = _changes(copy, config, script, base, head, base_rows)
                doing = f"cannot apply the other heads after {head} on a scratch database"
                migrate_scratch(copy, config, "heads", doing)
                finals.append((head, rows_now(copy, tables)))
    report.order_difference = _order_difference(tables, finals)
    return report


def _changes(
    engine: sa.Engine,
    config: Config,
    script: ScriptDirectory,
    base: str,
    head: str,
    base_rows: dict[str, Rows],
) -> dict[tuple[str, str], HeadChange]:
    tables = reference_tables()
    last: dict[tuple[str, str], Script] = {}
    fields: dict[tuple[str, str], dict[str, set[str]]] = {}
    for step in replay(engine, config, upgrade_path(script, base, head), all_rows(tables)):
        for change in step.changes(tables):
            row = (change.table, change.key)
            last[row] = step.script
            for name in change.fields():
                fields.setdefault(row, {}).setdefault(name, set()).add(step.script.revision)
    net = row_changes(tables, base_rows, rows_now(engine, tables))
    return {
        (c.table, c.key): HeadChange(
            head,
            last[(c.table, c.key)],
            c,
            {name: frozenset(revs) for name, revs in fields[(c.table, c.key)].items()},
        )
        for c in net
    }


def _order_difference(
    tables: tuple[RefTable, ...], finals: list[tuple[str, dict[str, Rows]]]
) -> str | None:
    first_head, first_rows = finals[0]
    for head, rows in finals[1:]:
        differences = row_changes(tables, first_rows, rows)
        if differences:
            row = differences[0]
            fields = "; ".join(
                f"{name} {value_text(a)} with {first_head} first, {value_text(b)} with {head} first"
                for name, (a, b) in row.fields().items()
            )
            return f"{row.table} {row.key}: {fields}"
    return None
