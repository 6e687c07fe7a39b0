"""The source of a data migration that takes head's reference rows to the declared ones.

The generated file follows the project's hand-written style: ad-hoc ``sa.table()``
definitions listing only the columns it touches, the rows frozen as UPPER_CASE
constants, changed fields as ``{key: (before, after)}``, and a ``downgrade()`` whose effect
is the exact inverse of ``upgrade()``. It imports nothing but the standard library,
sqlalchemy and alembic, and it is written already formatted as ``ruff format`` would
(every collection one item a line, with a trailing comma), so no formatter is needed.

The steps are ordered so that any edit applies, in either direction:

1. rows whose value of a UNIQUE column another row is about to take are *parked* on a
   placeholder first (PostgreSQL checks a non-deferrable UNIQUE constraint row by row,
   so swapping two names, or giving a removed row's name to a new one, needs this);
2. inserts, lookups before the rows that use them;
3. updates to their final values;
4. deletes, rows that use a lookup before the lookup, each after
   ``refdata_assert_unreferenced_during()`` has confirmed nothing still uses them.

A revision that carries more than :data:`INLINE_ROWS` rows (country codes, sort codes)
keeps them out of its source, in JSON Lines files beside it (:func:`data_files`): alembic
imports every revision file on every command, so rows in the source would cost every
command forever, and ``op.bulk_insert`` sends a statement's worth of Python per row. Those
revisions send each file's rows in a few set-based statements, each batch one JSON
document read server-side (bench/refdata_scale.py measures them against psql's COPY), and
freeze each file's SHA-256 in the source, so that the revision lock covers the rows too.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from seed_data.refdata.declared import Row, Rows
from seed_data.refdata.diff import TableDiff
from seed_data.refdata.tables import RefColumn, RefTable

LINE_LENGTH = 100
# Rows (added, removed, changed or parked, all tables) a revision lists in its source; above
# this, they go into data files. Large enough for every hand-sized catalogue change.
INLINE_ROWS = 100
# Rows a statement of a data-file revision sends: bounded work per statement, whatever the size.
ROWS_PER_STATEMENT = 5000
INDENT = "    "
# Non-ASCII characters written as they are; others become \N{...} escapes, so that ruff's
# ambiguous-character rules (RUF001: a curly quote, a dash, a no-break space) stay quiet.
LITERAL_SYMBOLS = frozenset("£€")

JSONB_LIST = '''
class JSONBList(sa.TypeDecorator):
    """JSONB that ``--sql`` mode can write inline: SQLAlchemy has no JSONB literal renderer."""

    impl = postgresql.JSONB
    cache_ok = True

    def process_literal_param(self, value: list[str], dialect: sa.Dialect) -> str:
        quoted = json.dumps(value, ensure_ascii=False).replace("'", "''")
        return f"'{quoted}'::jsonb"
'''

UPDATE_HELPER = '''
def _update(
    table: sa.TableClause, key: str, rows: dict[str, tuple[dict[str, object], ...]], side: int
) -> None:
    """Set each row's fields (found by key) to their values on one side of this revision."""
    for value, sides in rows.items():
        if sides[side]:
            op.execute(table.update().where(table.c[key] == value).values(**sides[side]))
'''

DELETE_HELPER = '''
def _delete(direction: str, table: sa.TableClause, key: str, rows: list[dict[str, object]]) -> None:
    """Delete these rows by key, once the guard has confirmed nothing still uses them."""
    _delete_keys(direction, table, key, [str(row[key]) for row in rows])
'''

# Keys travel as one array: PostgreSQL takes at most 100 function arguments.
DELETE_KEYS_HELPER = '''
def _delete_keys(direction: str, table: sa.TableClause, key: str, keys: list[str]) -> None:
    """Delete rows by key, once the guard has confirmed nothing still uses any of them."""
    array = sa.bindparam("keys", keys, type_=postgresql.ARRAY(sa.Text))
    guard = sa.text(
        "SELECT refdata_assert_unreferenced_during(:direction, :table, :key, VARIADIC :keys)"
    )
    op.execute(guard.bindparams(array, direction=direction, table=table.name, key=key))
    op.execute(table.delete().where(table.c[key] == sa.any_(array)))
'''

# A data-file revision's helpers: the rows are read (and their digests checked) only when
# the revision runs, never when alembic imports it.
DATA_FILE_HELPERS = '''
def _data(name: str) -> bytes:
    """The file's bytes, once its digest is the one frozen above."""
    path = ROWS / name
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CommandError(
            f"{path}: cannot read this revision's rows ({error.strerror}): restore it from git"
        ) from None
    if hashlib.sha256(data).hexdigest() != DIGESTS[name]:
        raise CommandError(
            f"{path} is not the file this revision was written with (its SHA-256 differs): "
            "restore it from git; a released revision's rows never change"
        )
    return data
'''

# Whole rows go in with COPY, in CSV: every other way measured at 1.8x COPY's time or more
# (JSON read server-side) up to 8x (op.bulk_insert). psycopg2 runs COPY only while no wait
# callback is set, and env.py sets one (so that Ctrl-C cancels a running statement): the
# helper lifts it for that one statement, while env.py's lock watcher (another thread,
# whose queries need the callback) is paused. In a --sql script the rows follow the COPY
# statement, which psql reads.
ROW_FILE_HELPERS = '''
def _insert(table: sa.TableClause, name: str) -> None:
    """Insert the file's rows (CSV, its first line naming the columns) with COPY."""
    data = _data(name)
    context = op.get_context()
    quote = context.dialect.identifier_preparer.quote
    columns = ", ".join(quote(column.name) for column in table.columns)
    copy = f"COPY {quote(table.name)} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true)"
    if context.as_sql:
        context.impl.static_output(f"{copy};\\n{data.decode('utf-8')}\\\\.")
        return
    from psycopg2 import extensions  # here, not above: loading a revision stays cheap

    cursor = op.get_bind().connection.driver_connection.cursor()
    # The callback is process-wide: env.py's lock watcher pauses its queries meanwhile.
    with context.opts.get("watch_paused", contextlib.nullcontext)():
        waiting = extensions.get_wait_callback()
        extensions.set_wait_callback(None)
        try:
            cursor.copy_expert(copy, io.BytesIO(data))
        finally:
            extensions.set_wait_callback(waiting)


def _delete(direction: str, table: sa.TableClause, key: str, name: str) -> None:
    """Delete the file's rows by key, once the guard has confirmed nothing still uses them."""
    position = [column.name for column in table.columns].index(key)
    rows = csv.reader(io.StringIO(_data(name).decode("utf-8"), newline=""))
    next(rows)  # the line naming the columns
    _delete_keys(direction, table, key, [row[position] for row in rows])
'''

UPDATE_FILE_HELPER = '''
def _batches(name: str) -> Iterator[str]:
    """The file's lines (a JSON object each) as JSON arrays of at most ROWS_PER_STATEMENT."""
    lines = _data(name).decode("utf-8").splitlines()
    for start in range(0, len(lines), ROWS_PER_STATEMENT):
        yield "[" + ",".join(lines[start : start + ROWS_PER_STATEMENT]) + "]"


def _recordset(batch: str, *columns: sa.ColumnClause) -> sa.TableValuedAlias:
    """``json_to_recordset(batch) AS r(column type, ...)``: a batch's rows as a table."""
    rows = sa.func.json_to_recordset(sa.cast(sa.literal(batch, sa.Text), sa.JSON))
    return rows.table_valued(*columns).render_derived("r", with_types=True)


def _update(table: sa.TableClause, key: str, name: str, side: str) -> None:
    """Set each row's fields (found by key) to their values on one side of this revision;
    fields a row does not list keep their value."""
    for batch in _batches(name):
        rows = _recordset(batch, sa.column("key", sa.Text), sa.column(side, postgresql.JSONB))
        fields = rows.c[side]
        values = {
            column.name: sa.case(
                (fields.has_key(column.name), sa.cast(fields[column.name].astext, column.type)),
                else_=column,
            )
            for column in table.columns
            if column.name != key
        }
        empty = sa.cast(sa.literal("{}", sa.Text), postgresql.JSONB)
        op.execute(table.update().values(values).where(table.c[key] == rows.c.key, fields != empty))
'''


@dataclass(frozen=True)
class Revision:
    """What alembic chose for the new file: its id, parent, date and message."""

    revision: str
    down_revision: str
    create_date: str
    message: str


@dataclass
class TablePlan:
    """One table's part of a revision: its diff, and the rows parked in each direction."""

    diff: TableDiff
    # key -> {column: placeholder}, set first when upgrading / downgrading
    parked_on_upgrade: dict[str, Row] = field(default_factory=dict)
    parked_on_downgrade: dict[str, Row] = field(default_factory=dict)

    @property
    def table(self) -> RefTable:
        return self.diff.table

    @property
    def parked(self) -> dict[str, tuple[Row, Row]]:
        """key -> (placeholders downgrade sets first, placeholders upgrade sets first)."""
        keys = sorted(self.parked_on_upgrade.keys() | self.parked_on_downgrade.keys())
        return {
            k: (self.parked_on_downgrade.get(k, {}), self.parked_on_upgrade.get(k, {}))
            for k in keys
        }


def plan(
    diffs: list[TableDiff], head: dict[str, Rows], declared: dict[str, Rows]
) -> list[TablePlan]:
    """Each table's steps, parents first, with the parking each direction needs."""
    return [
        TablePlan(
            diff,
            parked_on_upgrade=_parking(
                diff.table, head[diff.table.name], declared[diff.table.name]
            ),
            parked_on_downgrade=_parking(
                diff.table, declared[diff.table.name], head[diff.table.name]
            ),
        )
        for diff in diffs
    ]


def _parking(table: RefTable, start: Rows, end: Rows) -> dict[str, Row]:
    """Rows of ``start`` holding a unique value that another row holds in ``end``."""
    parked: dict[str, Row] = {}
    for unique in table.uniques:
        text_columns = [c for c in unique.columns if isinstance(table.column(c).type, sa.String)]
        if not text_columns:
            continue  # nothing to park a number on; the proof refuses if it is needed
        column = text_columns[0]
        holders = {tuple(row[c] for c in unique.columns): key for key, row in end.items()}
        taken = {row[column] for rows in (start, end) for row in rows.values()}
        for key, row in start.items():
            value = tuple(row[c] for c in unique.columns)
            holder = holders.get(value)
            if holder is not None and holder != key and None not in value:  # NULLs never clash
                placeholder = _placeholder(key, table.column(column), taken)
                taken.add(placeholder)
                parked.setdefault(key, {})[column] = placeholder
    return parked


def _placeholder(key: str, column: RefColumn, taken: set[Any]) -> str:
    """A value no row holds or will hold, that fits the column: ``~parked~<key>`` or ``~<n>``."""
    length = getattr(column.type, "length", None)
    candidates = itertools.chain([f"~parked~{key}"], (f"~{n}" for n in itertools.count(1)))
    return next(c for c in candidates if (length is None or len(c) <= length) and c not in taken)


@dataclass(frozen=True)
class Rendered:
    """A generated revision: its source, and its data files (name -> text; none inline)."""

    source: str
    data: dict[str, str] = field(default_factory=dict)


def carried_rows(plans: list[TablePlan]) -> int:
    """The rows a revision carries: added, removed, changed and parked, in every table."""
    return sum(
        len(p.diff.added) + len(p.diff.removed) + len(p.diff.changed) + len(p.parked) for p in plans
    )


def render(revision: Revision, plans: list[TablePlan], data_dir: str) -> Rendered:
    """The whole migration module as source text, formatted as ruff would format it, with
    its rows inline or, above :data:`INLINE_ROWS`, in data files for ``data_dir``."""
    if carried_rows(plans) <= INLINE_ROWS:
        return Rendered(_render_inline(revision, plans))
    data = data_files(plans)
    source = _render_with_files(revision, plans, data, data_dir)
    return Rendered(source, {name: file.text for name, file in data.items()})


def _render_inline(revision: Revision, plans: list[TablePlan]) -> str:
    uses_jsonb = any(isinstance(c.type, JSONB) for p in plans for c in _columns(p))
    constants = "\n\n".join(block for p in plans for block in _constants(p))
    uses_update = any(p.diff.changed or p.parked for p in plans)
    uses_delete = any(p.diff.added or p.diff.removed for p in plans)
    imports = [
        *(["import json"] if uses_jsonb else []),
        "from collections.abc import Sequence",
        *(["from decimal import Decimal"] if "Decimal(" in constants else []),
        "",
        "import sqlalchemy as sa",
        "from alembic import op",
        *(["from sqlalchemy.dialects import postgresql"] if uses_jsonb or uses_delete else []),
    ]
    sections = [
        "\n\n".join(
            [
                _header(revision),
                "\n".join(imports),
                _identifiers(
                    revision,
                    "BEFORE, AFTER = 0, 1  # the two sides of CHANGED_* and PARKED_* entries",
                ),
            ]
        ),
        *([JSONB_LIST.strip()] if uses_jsonb else []),
        "\n".join(_table(p, "JSONBList") for p in plans) + "\n\n" + constants,
        *_functions(revision, plans, _inline_argument, "op.bulk_insert"),
        *([UPDATE_HELPER.strip()] if uses_update else []),
        *([DELETE_HELPER.strip(), DELETE_KEYS_HELPER.strip()] if uses_delete else []),
    ]
    return "\n\n\n".join(sections) + "\n"


def _render_with_files(
    revision: Revision, plans: list[TablePlan], data: dict[str, DataFile], data_dir: str
) -> str:
    uses_update = any(p.diff.changed or p.parked for p in plans)
    uses_rows = any(p.diff.added or p.diff.removed for p in plans)
    imports = [
        *(["import contextlib", "import csv"] if uses_rows else []),
        "import hashlib",
        *(["import io"] if uses_rows else []),
        "from collections.abc import Iterator, Sequence"
        if uses_update
        else "from collections.abc import Sequence",
        "from pathlib import Path",
        "",
        "import sqlalchemy as sa",
        "from alembic import op",
        "from alembic.util import CommandError",
        "from sqlalchemy.dialects import postgresql",
    ]
    digests = {
        name: hashlib.sha256(file.text.encode("utf-8")).hexdigest() for name, file in data.items()
    }
    constants = "\n".join(
        [
            "# This revision's rows, one a line, are in the directory named like this file; their",
            "# SHA-256 digests are frozen here, so that the revision lock covers them too.",
            'ROWS = Path(__file__).with_suffix("")',
            f"DIGESTS = {literal(digests)}",
            *([f"ROWS_PER_STATEMENT = {ROWS_PER_STATEMENT}"] if uses_update else []),
        ]
    )
    files = "".join(f"  {name} ({file.rows:,} rows)\n" for name, file in data.items())
    sections = [
        "\n\n".join(
            [
                _header(
                    revision,
                    "Its rows, too many to list here, are in the directory beside this file, one\n"
                    f"a line:\n{data_dir}/\n{files}",
                ),
                "\n".join(imports),
                _identifiers(
                    revision,
                    'BEFORE, AFTER = "before", "after"  # the sides of *.changed and *.parked rows'
                    if uses_update
                    else "",
                ),
                constants,
            ]
        ),
        "\n".join(_table(p, "postgresql.JSONB") for p in plans),
        *_functions(revision, plans, _file_argument, "_insert"),
        DATA_FILE_HELPERS.strip(),
        *([ROW_FILE_HELPERS.strip(), DELETE_KEYS_HELPER.strip()] if uses_rows else []),
        *([UPDATE_FILE_HELPER.strip()] if uses_update else []),
    ]
    return "\n\n\n".join(sections) + "\n"


def _identifiers(revision: Revision, sides: str) -> str:
    return "\n".join(
        [
            f"revision: str = {string(revision.revision)}",
            f"down_revision: str | Sequence[str] | None = {string(revision.down_revision)}",
            "branch_labels: str | Sequence[str] | None = None",
            "depends_on: str | Sequence[str] | None = None",
            *(["", sides] if sides else []),
        ]
    )


def _functions(
    revision: Revision,
    plans: list[TablePlan],
    argument: Callable[[TablePlan, str], str],
    insert: str,
) -> list[str]:
    return [
        _function(
            "upgrade", f"Apply {revision.message}.", _steps(plans, "upgrade", argument, insert)
        ),
        _function(
            "downgrade",
            f"Unapply {revision.message}.",
            _steps(plans, "downgrade", argument, insert),
        ),
    ]


DATA_SUFFIXES = {"PARKED": "parked", "NEW": "added", "REMOVED": "removed", "CHANGED": "changed"}


def _inline_argument(p: TablePlan, kind: str) -> str:
    """The constant holding one kind of a table's rows."""
    return _name(p, kind)


def _file_argument(p: TablePlan, kind: str) -> str:
    """The data file holding one kind of a table's rows."""
    return string(data_file_name(p.table.name, kind))


def data_file_name(table: str, kind: str) -> str:
    """``<table>.added.csv`` (whole rows: COPY reads them), ``<table>.changed.jsonl``."""
    suffix = "csv" if kind in ("NEW", "REMOVED") else "jsonl"
    return f"{table}.{DATA_SUFFIXES[kind]}.{suffix}"


def data_files(plans: list[TablePlan]) -> dict[str, DataFile]:
    """Each data file: added and removed rows in CSV (a header naming the columns, then a
    row a line: texts quoted, NULL an empty cell, lists as JSON), which COPY reads; changed
    and parked rows as JSON Lines, ``{"key": ..., "before": {fields}, "after": {fields}}``."""
    files = {}
    for p in plans:
        names = list(p.table.column_names)
        for kind, rows in (("NEW", p.diff.added), ("REMOVED", p.diff.removed)):
            if rows:
                text = csv_line(names) + "".join(csv_line([row[n] for n in names]) for row in rows)
                files[data_file_name(p.table.name, kind)] = DataFile(text, len(rows))
        for kind, sides in (("PARKED", p.parked), ("CHANGED", p.diff.changed)):
            if sides:
                lines = [
                    json_text({"key": k, "before": b, "after": a}) + "\n"
                    for k, (b, a) in sides.items()
                ]
                files[data_file_name(p.table.name, kind)] = DataFile("".join(lines), len(lines))
    return files


@dataclass(frozen=True)
class DataFile:
    text: str
    rows: int


def csv_line(values: list[object]) -> str:
    """One CSV line as COPY reads it: every text quoted (so an empty text is not NULL),
    NULL an empty cell, numbers as written, true/false, lists as JSON text."""
    return ",".join(_csv_value(value) for value in values) + "\n"


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, list):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    raise TypeError(f"cannot freeze {type(value).__name__} values into a migration")


def _sides(rows: dict[str, tuple[Row, Row]]) -> list[object]:
    return [{"key": key, "before": before, "after": after} for key, (before, after) in rows.items()]


def json_text(value: object) -> str:
    """A value as JSON on one line: decimals exact, and characters a reviewer could misread
    (a no-break space, a curly quote) as \\u escapes, as the Python source writes them."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json_text(k)}: {json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(json_text(item) for item in value) + "]"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        if text.isascii():
            return text
        return "".join(
            c if c.isascii() or _literal_non_ascii(c) else json.dumps(c)[1:-1] for c in text
        )
    if isinstance(value, Decimal):
        return format(value, "f")
    if value is None or isinstance(value, bool | int):
        return json.dumps(value)
    raise TypeError(f"cannot freeze {type(value).__name__} values into a migration")


def _header(revision: Revision, rows: str = "") -> str:
    """The module docstring: alembic's usual header, then what wrote the file."""
    return (
        f'"""{docstring_text(revision.message)}\n\n'
        f"Revision ID: {revision.revision}\n"
        f"Revises: {revision.down_revision}\n"
        f"Create Date: {revision.create_date}\n\n"
        "Generated by `scripts/refdata.py revision` from the declared reference files (head's\n"
        "reference rows -> the declared ones), and proved on a scratch database before it was\n"
        "written: upgrade, downgrade and upgrade again, online and through `--sql`.\n"
        + (f"\n{rows}" if rows else "")
        + '"""'
    )


def _function(name: str, doc: str, steps: list[str]) -> str:
    return "\n".join([f"def {name}() -> None:", f'{INDENT}"""{docstring_text(doc)}"""', *steps])


def _steps(
    plans: list[TablePlan],
    direction: str,
    argument: Callable[[TablePlan, str], str],
    insert: str,
) -> list[str]:
    """Park, insert (parents first), update, delete (children first): see the module doc."""
    upgrading = direction == "upgrade"
    side = "AFTER" if upgrading else "BEFORE"
    inserted, deleted = ("NEW", "REMOVED") if upgrading else ("REMOVED", "NEW")
    rows = {"NEW": lambda p: p.diff.added, "REMOVED": lambda p: p.diff.removed}
    parked = (lambda p: p.parked_on_upgrade) if upgrading else (lambda p: p.parked_on_downgrade)
    return [
        *(_call("_update", *_target(p), argument(p, "PARKED"), side) for p in plans if parked(p)),
        *(_call(insert, p.table.name, argument(p, inserted)) for p in plans if rows[inserted](p)),
        *(
            _call("_update", *_target(p), argument(p, "CHANGED"), side)
            for p in plans
            if p.diff.changed
        ),
        *(
            _call("_delete", string(direction), *_target(p), argument(p, deleted))
            for p in reversed(plans)
            if rows[deleted](p)
        ),
    ]


def _target(p: TablePlan) -> tuple[str, str]:
    return p.table.name, string(p.table.key)


def _name(p: TablePlan, kind: str) -> str:
    return f"{kind}_{p.table.name.upper()}"


def _call(function: str, *arguments: str) -> str:
    """A call statement inside a function body, wrapped the way ruff format wraps it."""
    joined = ", ".join(arguments)
    one_line = f"{INDENT}{function}({joined})"
    if len(one_line) <= LINE_LENGTH:
        return one_line
    if len(INDENT * 2 + joined) <= LINE_LENGTH:
        return f"{INDENT}{function}(\n{INDENT * 2}{joined}\n{INDENT})"
    items = "".join(f"{INDENT * 2}{a},\n" for a in arguments)
    return f"{INDENT}{function}(\n{items}{INDENT})"


def _columns(p: TablePlan) -> list[RefColumn]:
    """The columns this revision touches: all of them for whole rows, else key and changes."""
    diff = p.diff
    if diff.added or diff.removed:
        return list(diff.table.columns)
    touched = {name for before, _ in diff.changed.values() for name in before}
    touched |= {name for sides in p.parked.values() for side in sides for name in side}
    return [c for c in diff.table.columns if c.name == diff.table.key or c.name in touched]


def _table(p: TablePlan, jsonb: str) -> str:
    columns = "".join(
        f"{INDENT}sa.column({string(c.name)}, {_type(c, jsonb)}),\n" for c in _columns(p)
    )
    return f"{p.table.name} = sa.table(\n{INDENT}{string(p.table.name)},\n{columns})"


def _type(column: RefColumn, jsonb: str) -> str:
    kind = column.type
    if isinstance(kind, JSONB):
        return jsonb
    if isinstance(kind, sa.Boolean):
        return "sa.Boolean"
    if isinstance(kind, sa.Numeric):
        return f"sa.Numeric({kind.precision}, {kind.scale})"
    if isinstance(kind, sa.BigInteger):
        return "sa.BigInteger"
    if isinstance(kind, sa.Integer):
        return "sa.Integer"
    if isinstance(kind, sa.Text):
        return "sa.Text"
    return "sa.String"


def _constants(p: TablePlan) -> list[str]:
    diff, key = p.diff, p.table.key
    blocks = []
    if p.parked:
        columns = sorted({c for sides in p.parked.values() for side in sides for c in side})
        blocks.append(
            f"# Unique values ({', '.join(columns)}) move between rows, and PostgreSQL checks them\n"
            "# row by row: these rows hold a placeholder until the rows taking their values are\n"
            f"# in place. {key} -> (placeholders downgrade sets first, placeholders upgrade sets first)\n"
            f"{_name(p, 'PARKED')} = {literal(p.parked)}"
        )
    if diff.added:
        blocks.append(
            "# Rows this revision adds (deleted again by downgrade).\n"
            f"{_name(p, 'NEW')} = {literal(diff.added)}"
        )
    if diff.removed:
        blocks.append(
            "# Rows this revision deletes, in full (restored by downgrade).\n"
            f"{_name(p, 'REMOVED')} = {literal(diff.removed)}"
        )
    if diff.changed:
        blocks.append(
            f"# {key} -> (fields before this revision, the same fields after it)\n"
            f"{_name(p, 'CHANGED')} = {literal(diff.changed)}"
        )
    return blocks


def literal(value: object, depth: int = 0) -> str:
    """Python source for a frozen value, one item a line with trailing commas (ruff's layout)."""
    inner, outer = INDENT * (depth + 1), INDENT * depth
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = "".join(
            f"{inner}{literal(k)}: {literal(v, depth + 1)},\n" for k, v in value.items()
        )
        return "{\n" + items + outer + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]" if isinstance(value, list) else "()"
        items = "".join(f"{inner}{literal(v, depth + 1)},\n" for v in value)
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
        return opening + "\n" + items + outer + closing
    if isinstance(value, str):
        return string(value)
    if isinstance(value, Decimal):
        return f'Decimal("{value}")'
    if value is None or isinstance(value, bool | int):
        return repr(value)
    raise TypeError(f"cannot freeze {type(value).__name__} values into a migration")


def string(value: str) -> str:
    """A string literal with the quotes ruff prefers: double, unless that needs more escapes."""
    quote = "'" if value.count('"') > value.count("'") else '"'
    return quote + _escaped(value, quote) + quote


def docstring_text(text: str) -> str:
    """``text`` safe inside a triple-quoted docstring, showing the same characters."""
    escaped = _escaped(text, None).replace('"""', '\\"\\"\\"')
    if escaped.startswith('"'):
        escaped = "\\" + escaped
    if escaped.endswith('"'):
        escaped = escaped[:-1] + '\\"'
    return escaped


def _escaped(value: str, quote: str | None) -> str:
    out = []
    for character in value:
        if character == "\\":
            out.append("\\\\")
        elif character == quote:
            out.append("\\" + quote)
        elif character == "\n":
            out.append("\\n")
        elif " " <= character <= "~" or _literal_non_ascii(character):
            out.append(character)
        else:
            name = unicodedata.name(character, "")
            out.append(f"\\N{{{name}}}" if name else f"\\u{ord(character):04x}")
    return "".join(out)


def _literal_non_ascii(character: str) -> bool:
    """A currency sign we use, or an accented Latin letter (é, ü, ñ): not confusable."""
    if character in LITERAL_SYMBOLS:
        return True
    decomposed = unicodedata.normalize("NFD", character)
    return (
        character > "~"
        and len(decomposed) > 1
        and decomposed[0].isascii()
        and decomposed[0].isalpha()
        and all(unicodedata.combining(c) for c in decomposed[1:])
    )


def render_merge(revision: str, heads: list[str], create_date: str, message: str, base: str) -> str:
    """A merge revision of ``heads``: no steps of its own, and no imports it does not use."""
    return (
        f'"""{docstring_text(message)}\n\n'
        f"Revision ID: {revision}\n"
        f"Revises: {', '.join(heads)}\n"
        f"Create Date: {create_date}\n\n"
        f"Merges {len(heads)} heads. Written by `scripts/refdata.py merge` once it had replayed\n"
        f"each of them from their common ancestor, {base}: they change different reference\n"
        "rows, and give the same rows whichever a database applies first.\n"
        '"""\n\n'
        "from collections.abc import Sequence\n\n"
        f"revision: str = {string(revision)}\n"
        f"down_revision: str | Sequence[str] | None = {literal(tuple(heads))}\n"
        "branch_labels: str | Sequence[str] | None = None\n"
        "depends_on: str | Sequence[str] | None = None\n\n\n"
        f"{_function('upgrade', f'Apply {message}.', [])}\n\n\n"
        f"{_function('downgrade', f'Unapply {message}.', [])}\n"
    )
