"""The declared reference data: ``seed_data/reference/<table>.yaml``, loaded and validated.

Each file is a YAML list of mappings, one per row, with every column of the table.
Loading checks everything it can before anything is written anywhere: the YAML itself,
duplicate keys, unknown or missing columns, value types (lengths, decimal places,
nullability), and references to lookup values the other files do not declare. Every
problem is reported with ``file:line`` of the row it is in.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.dialects.postgresql import JSONB

from seed_data.refdata.tables import RefColumn, RefTable, reference_tables

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "reference"

Row = dict[str, Any]
Rows = dict[str, Row]  # natural key -> row


class DeclarationError(ValueError):
    """The declared files are invalid; ``problems`` holds one ``file:line: ...`` per issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Loader(yaml.SafeLoader):
    """Reads YAML numbers with a fraction as exact Decimals (4.05 stays 4.05)."""


_Loader.add_constructor(
    "tag:yaml.org,2002:float", lambda loader, node: Decimal(loader.construct_scalar(node))
)


def load_declared(directory: Path = REFERENCE_DIR) -> dict[str, Rows]:
    """Every reference table's declared rows, validated; raise DeclarationError if any is wrong."""
    tables = reference_tables()
    problems: list[str] = []
    declared: dict[str, Rows] = {}
    lines: dict[str, dict[str, int]] = {}
    expected_files = {f"{t.name}.yaml" for t in tables}
    problems += [
        f"{path}: not a reference table (expected one of: {', '.join(sorted(expected_files))})"
        for path in sorted(directory.glob("*.yaml"))
        if path.name not in expected_files
    ]
    for table in tables:
        path = directory / f"{table.name}.yaml"
        declared[table.name], lines[table.name] = _load_file(path, table, problems)
    for table in tables:
        for column in table.columns:
            if column.references is None:
                continue
            known = declared[column.references]
            for key, row in declared[table.name].items():
                value = row.get(column.name)
                if value is not None and value not in known:
                    problems.append(
                        f"{directory / table.name}.yaml:{lines[table.name][key]}: "
                        f"{column.name} {value!r} is not declared in {column.references}.yaml"
                    )
    if problems:
        raise DeclarationError(problems)
    return declared


def _load_file(path: Path, table: RefTable, problems: list[str]) -> tuple[Rows, dict[str, int]]:
    try:
        loader = _Loader(path.read_text(encoding="utf-8"))
    except OSError as error:
        problems.append(f"{path}: cannot read the file ({error.strerror})")
        return {}, {}
    try:
        root = loader.get_single_node()
        if root is None:
            return {}, {}
        if not isinstance(root, yaml.SequenceNode):
            problems.append(f"{path}:{root.start_mark.line + 1}: expected a list of rows")
            return {}, {}
        rows: Rows = {}
        lines: dict[str, int] = {}
        for node in root.value:
            line = node.start_mark.line + 1
            where = f"{path}:{line}"
            if not isinstance(node, yaml.MappingNode):
                problems.append(f"{where}: a row must be a mapping of column: value")
                continue
            names = [k.value for k, _ in node.value]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                problems.append(f"{where}: column {', '.join(repeated)} given twice")
            row = _validate_row(loader.construct_mapping(node, deep=True), table, where, problems)
            if row is None:
                continue
            key = row[table.key]
            if key in rows:
                problems.append(
                    f"{where}: duplicate {table.key} {key!r} (first declared on line {lines[key]})"
                )
                continue
            rows[key], lines[key] = row, line
        return rows, lines
    except yaml.YAMLError as error:
        problems.append(f"{path}: not valid YAML: {' '.join(str(error).split())}")
        return {}, {}
    finally:
        loader.dispose()


def _validate_row(raw: dict, table: RefTable, where: str, problems: list[str]) -> Row | None:
    before = len(problems)
    unknown = sorted(str(name) for name in raw if name not in table.column_names)
    missing = [name for name in table.column_names if name not in raw]
    if unknown:
        problems.append(f"{where}: unknown column {', '.join(unknown)} for {table.name}")
    if missing:
        problems.append(f"{where}: missing column {', '.join(missing)}")
    row: Row = {}
    for column in table.columns:
        if column.name in raw:
            value, problem = normalise(column, raw[column.name])
            if problem:
                problems.append(f"{where}: {column.name}: {problem}")
            row[column.name] = value
    return None if len(problems) > before else row


def normalise(column: RefColumn, value: Any) -> tuple[Any, str | None]:
    """The value as the database would hold it, or a description of what is wrong with it."""
    if value is None:
        return None, None if column.nullable else "must have a value (the column is NOT NULL)"
    kind = column.type
    if isinstance(kind, JSONB):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return value, f"expected a list of strings, got {value!r}"
        return value, None
    if isinstance(kind, sa.Boolean):
        return value, None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if isinstance(kind, sa.Numeric):
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            return value, f"expected a number, got {value!r}"
        return _decimal(Decimal(value), kind)
    if isinstance(kind, sa.Integer):
        if isinstance(value, bool) or not isinstance(value, int):
            return value, f"expected a whole number, got {value!r}"
        return value, None
    if isinstance(kind, sa.String):  # Text too
        if not isinstance(value, str):
            return value, f"expected text, got {value!r} (quote it)"
        if kind.length is not None and len(value) > kind.length:
            return value, f"longer than {kind.length} characters"
        return value, None
    return value, f"columns of type {kind} are not supported in declared reference data"


def _decimal(value: Decimal, kind: sa.Numeric) -> tuple[Decimal, str | None]:
    scale = kind.scale or 0
    try:
        exact = value.quantize(Decimal(1).scaleb(-scale))
    except InvalidOperation:
        return value, f"{value} does not fit NUMERIC({kind.precision}, {scale})"
    if exact != value:
        return value, f"{value} has more than {scale} decimal places"
    if kind.precision is not None and len(exact.as_tuple().digits) > kind.precision:
        return value, f"{value} does not fit NUMERIC({kind.precision}, {scale})"
    return exact, None
