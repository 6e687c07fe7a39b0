"""Writing a data migration that takes head's reference rows to the declared ones.

The generated file follows the project's hand-written style: ad-hoc ``sa.table()``
definitions listing only the columns it touches, the rows frozen as UPPER_CASE
constants, changed fields as ``{key: (before, after)}``, and a ``downgrade()`` that is
the exact inverse of ``upgrade()``. It imports nothing but the standard library,
sqlalchemy and alembic. Alembic itself creates the file (id, dated name, header); this
module writes its body, then ruff formats it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects.postgresql import JSONB

from seed_data.refdata.diff import TableDiff
from seed_data.refdata.tables import RefColumn

JSONB_LIST = '''
class JSONBList(sa.TypeDecorator):
    """JSONB that ``--sql`` mode can write inline: SQLAlchemy has no JSONB literal renderer."""

    impl = postgresql.JSONB
    cache_ok = True

    def process_literal_param(self, value: list[str], dialect: sa.Dialect) -> str:
        quoted = json.dumps(value, ensure_ascii=False).replace("'", "''")
        return f"'{quoted}'::jsonb"
'''

DELETE_HELPER = '''
def _delete(table: sa.TableClause, key: str, rows: list[dict[str, object]]) -> None:
    """Delete these rows by key, once the guard has confirmed nothing still uses them."""
    keys = [row[key] for row in rows]
    op.execute(sa.select(sa.func.refdata_assert_unreferenced(table.name, key, *keys)))
    op.execute(table.delete().where(table.c[key].in_(keys)))
'''


def write_revision(config: Config, message: str, diffs: list[TableDiff]) -> Path:
    """Create the revision file for ``diffs`` (head -> declared) and return its path."""
    script = command.revision(config, message=message)
    path = Path(script.path)  # type: ignore[union-attr]
    header = path.read_text(encoding="utf-8")
    docstring = header[: header.index('"""', 3) + 3]
    identifiers = "\n".join(
        line
        for line in header.splitlines()
        if re.match(r"(revision|down_revision|branch_labels|depends_on): ", line)
    )
    path.write_text(render(docstring, identifiers, message, diffs), encoding="utf-8")
    for ruff in (["check", "--fix", "--quiet"], ["format", "--quiet"]):
        subprocess.run([sys.executable, "-m", "ruff", *ruff, str(path)], check=True)
    return path


def render(docstring: str, identifiers: str, message: str, diffs: list[TableDiff]) -> str:
    """The whole migration module as source text (before formatting)."""
    uses_jsonb = any(isinstance(c.type, JSONB) for d in diffs for c in _columns(d))
    constants = "\n\n".join(_constants(d) for d in diffs)
    imports = [
        *(["import json"] if uses_jsonb else []),
        "from collections.abc import Sequence",
        *(["from decimal import Decimal"] if "Decimal(" in constants else []),
        "",
        "import sqlalchemy as sa",
        "from alembic import op",
        *(["from sqlalchemy.dialects import postgresql"] if uses_jsonb else []),
    ]
    upgrade = _steps(diffs, insert="added", revert=1, delete="removed")
    downgrade = _steps(diffs, insert="removed", revert=0, delete="added")
    return "\n".join(
        [
            docstring,
            "",
            *imports,
            "",
            identifiers,
            "",
            JSONB_LIST if uses_jsonb else "",
            "\n".join(_table(d) for d in diffs),
            "",
            constants,
            "",
            "",
            "def upgrade() -> None:",
            f'    """Apply {message}."""',
            *upgrade,
            "",
            "",
            "def downgrade() -> None:",
            f'    """Unapply {message}."""',
            *downgrade,
            "",
            DELETE_HELPER if any(d.added or d.removed for d in diffs) else "",
        ]
    )


def _steps(diffs: list[TableDiff], insert: str, revert: int, delete: str) -> list[str]:
    """Inserts parents-first, then field updates, then deletes children-first."""
    steps = []
    for diff in diffs:
        if getattr(diff, insert):
            steps.append(f"    op.bulk_insert({diff.table.name}, {_constant(diff, insert)})")
    for diff in diffs:
        if diff.changed:
            name, key = diff.table.name, diff.table.key
            fields = "(_, fields)" if revert else "(fields, _)"
            steps += [
                f"    for {key}, {fields} in {_constant(diff, 'changed')}.items():",
                f"        op.execute({name}.update().where({name}.c.{key} == {key}).values(**fields))",
            ]
    for diff in reversed(diffs):
        if getattr(diff, delete):
            table, key = diff.table.name, diff.table.key
            steps.append(f'    _delete({table}, "{key}", {_constant(diff, delete)})')
    return steps


def _constant(diff: TableDiff, kind: str) -> str:
    prefix = {"added": "NEW", "removed": "REMOVED", "changed": "CHANGED"}[kind]
    return f"{prefix}_{diff.table.name.upper()}"


def _columns(diff: TableDiff) -> list[RefColumn]:
    """The columns this revision touches: all of them for whole rows, else key and changes."""
    if diff.added or diff.removed:
        return list(diff.table.columns)
    changed = {name for before, _ in diff.changed.values() for name in before}
    return [c for c in diff.table.columns if c.name == diff.table.key or c.name in changed]


def _table(diff: TableDiff) -> str:
    columns = "".join(f"    sa.column({c.name!r}, {_type(c)}),\n" for c in _columns(diff))
    return f"{diff.table.name} = sa.table(\n    {diff.table.name!r},\n{columns})"


def _type(column: RefColumn) -> str:
    kind = column.type
    if isinstance(kind, JSONB):
        return "JSONBList"
    if isinstance(kind, sa.Boolean):
        return "sa.Boolean"
    if isinstance(kind, sa.Numeric):
        return f"sa.Numeric({kind.precision}, {kind.scale})"
    if isinstance(kind, sa.Integer):
        return "sa.Integer"
    if isinstance(kind, sa.Text):
        return "sa.Text"
    return "sa.String"


def _constants(diff: TableDiff) -> str:
    blocks = []
    if diff.added:
        blocks.append(
            f"# Rows this revision adds (deleted again by downgrade).\n"
            f"{_constant(diff, 'added')} = {_literal(diff.added)}"
        )
    if diff.removed:
        blocks.append(
            f"# Rows this revision deletes, in full (restored by downgrade).\n"
            f"{_constant(diff, 'removed')} = {_literal(diff.removed)}"
        )
    if diff.changed:
        blocks.append(
            f"# {diff.table.key} -> (fields before this revision, the same fields after it)\n"
            f"{_constant(diff, 'changed')} = {_literal(diff.changed)}"
        )
    return "\n\n".join(blocks)


def _literal(value: object) -> str:
    """Python source for a frozen value; the formatter lays it out afterwards."""
    if isinstance(value, Decimal):
        return f'Decimal("{value}")'
    if isinstance(value, dict):
        items = ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items())
        return "{" + items + ",}" if items else "{}"
    if isinstance(value, list | tuple):
        items = ", ".join(_literal(v) for v in value)
        if isinstance(value, tuple):
            return f"({items})"
        return f"[{items},]" if items else "[]"
    return repr(value)
