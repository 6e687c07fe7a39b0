"""The declared reference data: ``seed_data/reference/<table>.yaml``, loaded and validated.

Each file is a YAML list of mappings, one per row, with every column of the table.
Loading checks everything it can before any database is touched: the encoding, the YAML
itself, duplicate keys, unknown or missing columns, each value against its column's type
as the models declare it (text length, characters PostgreSQL or ``alembic --sql`` cannot
carry, integer range, decimal places, NaN and infinity, NOT NULL), UNIQUE constraints
across the declared rows, and references to lookup values the other files do not declare.
Every problem is reported as ``file:line: ...``.

Values are read by their column's type, not by YAML's guesses. A plain (unquoted) value
in a text column is the text as written (``label: No`` is "No", ``code: 010`` is "010");
number and true/false columns take YAML 1.2 numbers and booleans, and refuse the YAML 1.1
forms a person would misread (``yes``/``no``/``on``/``off``, ``010`` as octal, ``1:30``
as base 60, ``1_000``) with a line saying what to write instead.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.dialects.postgresql import JSONB
from yaml.composer import Composer
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from seed_data.refdata.files import shown
from seed_data.refdata.tables import RefColumn, RefTable, reference_tables

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "reference"

Row = dict[str, Any]
Rows = dict[str, Row]  # natural key -> row

PLAIN = "!refdata-plain"  # the tag our resolver gives every unquoted scalar
TEXT = BaseResolver.DEFAULT_SCALAR_TAG  # quoted and block scalars, and explicit !!str
NULLS = {"", "~", "null", "Null", "NULL"}
TRUE, FALSE = {"true", "True", "TRUE"}, {"false", "False", "FALSE"}
YAML11_BOOLEANS = {"y", "yes", "n", "no", "on", "off"}
WHOLE = re.compile(r"[-+]?[0-9]+")
DECIMAL = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
BASE_60 = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")
NOT_FINITE = re.compile(r"[-+]?\.?(nan|inf|infinity)", re.IGNORECASE)
PREFIXED = re.compile(r"[-+]?0[xXoObB][0-9a-fA-F_]+")
INTEGER_BITS = ((sa.SmallInteger, 16), (sa.BigInteger, 64), (sa.Integer, 32))


class DeclarationError(ValueError):
    """The declared files are invalid; ``problems`` holds one ``file:line: ...`` per issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Origin:
    """Where a row is declared: its file, the line it starts on, and each value's line."""

    path: Path
    line: int
    fields: dict[str, int] = field(default_factory=dict, compare=False)

    def line_of(self, column: str | None = None) -> int:
        return self.fields.get(column or "", self.line)

    def at(self, column: str | None = None) -> str:
        return f"{self.path}:{self.line_of(column)}"


class Declared(dict[str, Rows]):
    """Each table's declared rows (``table -> key -> row``), and where each was declared."""

    def __init__(self, rows: dict[str, Rows], origins: dict[tuple[str, str], Origin]) -> None:
        super().__init__(rows)
        self.origins = origins

    def where(self, table: str, key: str, column: str | None = None) -> str:
        """``file:line`` of a declared row (or of one of its values)."""
        return self.origins[table, key].at(column)


class _Resolver(BaseResolver):
    """Tags every plain scalar PLAIN, so that each column reads it by its own type."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return PLAIN
        return super().resolve(kind, value, implicit)


class _Composer(Reader, Scanner, Parser, Composer, _Resolver):
    """PyYAML's reader, scanner, parser and composer: the node tree, with line numbers."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Resolver.__init__(self)


@dataclass
class _File:
    rows: Rows = field(default_factory=dict)  # the rows with no problem at all
    # Every declared row's valid values: uniqueness and references are checked on these, so
    # that one bad value neither hides the row's other mistakes nor cascades into others.
    values: Rows = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)  # every key declared, valid row or not
    loaded: bool = False  # the file parsed as a list of rows


def load_declared(directory: Path = REFERENCE_DIR) -> Declared:
    """Every reference table's declared rows, validated; raise DeclarationError if any is wrong."""
    directory = shown(directory)
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise DeclarationError([f"{directory}: {what} (expected the declared reference files)"])
    tables = reference_tables()
    expected_files = {f"{t.name}.yaml" for t in tables}
    problems = [
        f"{path}: not a reference table (expected one of: {', '.join(sorted(expected_files))})"
        for path in sorted(directory.glob("*.yaml"))
        if path.name not in expected_files
    ]
    files = {t.name: _load_file(directory / f"{t.name}.yaml", t, problems) for t in tables}
    for table in tables:
        problems += _unique_problems(table, files[table.name])
        problems += _reference_problems(table, files)
    if problems:
        raise DeclarationError(problems)
    return Declared(
        {name: file.rows for name, file in files.items()},
        {
            (name, key): origin
            for name, file in files.items()
            for key, origin in file.origins.items()
        },
    )


def _load_file(path: Path, table: RefTable, problems: list[str]) -> _File:
    result = _File()
    try:
        text = _decode(path, path.read_bytes())
    except OSError as error:
        problems.append(f"{path}: cannot read the file ({error.strerror})")
        return result
    except ValueError as error:
        problems.append(str(error))
        return result
    composer = None
    try:
        composer = _Composer(text)
        root = composer.get_single_node()
    except yaml.reader.ReaderError as error:
        line = text[: error.position].count("\n") + 1
        problems.append(
            f"{path}:{line}: not valid YAML: the control character U+{error.character:04X} "
            "is not allowed in a YAML file: remove it"
        )
        return result
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        said = " ".join(str(error.problem or error.context).split())
        if error.context and error.context_mark and error.problem:
            context = error.context.removeprefix("while ").replace("parsing ", "", 1)
            said += f" (in {context} that starts on line {error.context_mark.line + 1})"
        problems.append(f"{where}: not valid YAML: {said}")
        return result
    except yaml.YAMLError as error:
        problems.append(f"{path}: not valid YAML: {' '.join(str(error).split())}")
        return result
    finally:
        if composer is not None:
            composer.dispose()
    if root is None:
        problems.append(f"{path}: the file declares nothing: list the rows, or write [] for none")
        return result
    if not isinstance(root, yaml.SequenceNode):
        problems.append(f"{path}:{root.start_mark.line + 1}: expected a list of rows")
        return result
    result.loaded = True
    for node in root.value:
        _load_row(path, table, node, result, problems)
    return result


def _decode(path: Path, data: bytes) -> str:
    """The file's text; a ValueError naming the line of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[error.start]:02x} at column {column}): "
            "save the file as UTF-8"
        ) from None


def _load_row(
    path: Path, table: RefTable, node: yaml.Node, out: _File, problems: list[str]
) -> None:
    line = node.start_mark.line + 1
    where = f"{path}:{line}"
    if not isinstance(node, yaml.MappingNode):
        problems.append(f"{where}: a row must be a mapping of column: value")
        return
    before = len(problems)
    given: dict[str, yaml.Node] = {}
    for name_node, value_node in node.value:
        name = name_node.value if isinstance(name_node, yaml.ScalarNode) else None
        if name == "<<":
            problems.append(
                f"{path}:{name_node.start_mark.line + 1}: `<<` merge keys (YAML 1.1) are not "
                "supported: write every column in each row"
            )
        elif not isinstance(name, str):
            problems.append(f"{path}:{name_node.start_mark.line + 1}: a column name must be text")
        elif name in given:
            problems.append(f"{path}:{name_node.start_mark.line + 1}: column {name} given twice")
        else:
            given[name] = value_node
    unknown = sorted(name for name in given if name not in table.column_names)
    merged = any(isinstance(n, yaml.ScalarNode) and n.value == "<<" for n, _ in node.value)
    # Columns a refused merge key would have supplied are not missing as well.
    missing = [] if merged else [name for name in table.column_names if name not in given]
    if unknown:
        problems.append(f"{where}: unknown column {', '.join(unknown)} for {table.name}")
    if missing:
        problems.append(f"{where}: missing column {', '.join(missing)}")
    row: Row = {}
    lines = {name: value.start_mark.line + 1 for name, value in given.items()}
    for column in table.columns:
        if column.name in given:
            value, problem, at = read_value(column, given[column.name])
            if problem:
                problems.append(f"{path}:{at.start_mark.line + 1}: {column.name}: {problem}")
            else:
                row[column.name] = value
    key_node = given.get(table.key)
    key = row.get(table.key)
    if key is None and isinstance(key_node, yaml.ScalarNode):
        key = key_node.value  # invalid, but other rows may refer to it: no cascade
    if not isinstance(key, str):
        return
    if key in out.keys:
        problems.append(
            f"{where}: duplicate {table.key} {key!r} (first declared on line "
            f"{out.origins[key].line if key in out.origins else '?'})"
        )
        return
    out.keys.add(key)
    out.origins[key] = Origin(path, line, lines)
    if len(problems) == before:
        out.rows[key] = row
    out.values[key] = row


def read_value(column: RefColumn, node: yaml.Node) -> tuple[Any, str | None, yaml.Node]:
    """The value as the database would hold it, or what is wrong with it and where."""
    kind = column.type
    if isinstance(node, yaml.SequenceNode) and isinstance(kind, JSONB):
        return _text_list(node)
    value, problem = _scalar(column, node)
    return value, problem, node


def _scalar(column: RefColumn, node: yaml.Node) -> tuple[Any, str | None]:
    kind = column.type
    if not isinstance(node, yaml.ScalarNode):
        shape = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
        return None, f"expected {_expected(kind)}, got {shape}"
    if node.tag not in (PLAIN, TEXT):
        return None, f"the tag {node.tag} is not supported: write the value without a tag"
    if node.tag == PLAIN and node.value in NULLS:
        if column.nullable:
            return None, None
        return None, "must have a value (the column is NOT NULL); quote it if you mean that text"
    if isinstance(kind, JSONB):
        return None, f"expected {_expected(kind)}, got {node.value!r}"
    if isinstance(kind, sa.String):  # Text too
        return _text(node.value, kind.length)
    if node.tag == TEXT:
        return None, f"expected {_expected(kind)}, got the quoted text {node.value!r}: unquote it"
    if isinstance(kind, sa.Boolean):
        return _boolean(node.value)
    if isinstance(kind, sa.Numeric | sa.Integer):
        return _number(node.value, kind)
    return None, f"columns of type {kind} are not supported in declared reference data"


def _expected(kind: sa.types.TypeEngine) -> str:
    if isinstance(kind, JSONB):
        return "a list of texts"
    if isinstance(kind, sa.String):
        return "text"
    if isinstance(kind, sa.Boolean):
        return "true or false"
    return "a number" if isinstance(kind, sa.Numeric) else "a whole number"


def _text_list(node: yaml.SequenceNode) -> tuple[Any, str | None, yaml.Node]:
    items = []
    for position, item in enumerate(node.value, start=1):
        if not isinstance(item, yaml.ScalarNode) or item.tag not in (PLAIN, TEXT):
            return None, f"item {position}: expected text", item
        if item.tag == PLAIN and item.value in NULLS:
            return None, f"item {position} is empty; quote it if you mean that text", item
        text, problem = _text(item.value, None)
        if problem:
            return None, f"item {position} {problem}", item
        items.append(text)
    return items, None, node


def _text(value: str, length: int | None) -> tuple[Any, str | None]:
    if length is not None and len(value) > length:
        return None, f"longer than {length} characters ({len(value)})"
    for character in value:
        if character == "\x00":
            return None, "contains a NUL character (\\0), which PostgreSQL text cannot hold"
        if character == "\t":
            return None, (
                "contains a tab, which `alembic upgrade --sql` would write as four spaces "
                "(so an offline upgrade would differ): use spaces"
            )
        category = unicodedata.category(character)
        if category == "Cs":
            return None, (
                f"contains U+{ord(character):04X}, half of a UTF-16 surrogate pair, which is "
                "not a character: write the character itself"
            )
        if category == "Cc" and character != "\n":
            return None, f"contains the control character U+{ord(character):04X}: remove it"
    return value, None


def _boolean(text: str) -> tuple[Any, str | None]:
    if text in TRUE:
        return True, None
    if text in FALSE:
        return False, None
    if text.lower() in YAML11_BOOLEANS:
        return None, f"{text} means true or false only in YAML 1.1: write true or false"
    return None, f"expected true or false, got {text!r}"


def _number(text: str, kind: sa.Numeric | sa.Integer) -> tuple[Any, str | None]:
    whole = not isinstance(kind, sa.Numeric)
    if NOT_FINITE.fullmatch(text):
        return None, f"{text}: NaN and infinity are not allowed here, only finite numbers"
    if BASE_60.fullmatch(text):
        return None, (
            f"{text} is a base-60 number in YAML 1.1 "
            f"({_base_60(text)}): write the number you mean as digits"
        )
    if PREFIXED.fullmatch(text):
        return None, f"{text}: write the number in decimal digits"
    if "_" in text and (
        WHOLE.fullmatch(text.replace("_", "")) or DECIMAL.fullmatch(text.replace("_", ""))
    ):
        return None, f"{text}: write the number without underscores ({text.replace('_', '')})"
    if re.fullmatch(r"[-+]?0[0-9]+", text):
        read = f"octal {int(text, 8)}" if re.fullmatch(r"[-+]?0[0-7]+", text) else "text"
        return None, f"{text} has a leading zero (YAML 1.1 reads it as {read}): write {int(text)}"
    if whole and WHOLE.fullmatch(text):
        return _integer(int(text), kind)
    if not whole and DECIMAL.fullmatch(text):
        return _decimal(Decimal(text), kind)
    return None, f"expected {_expected(kind)}, got {text!r}"


def _base_60(text: str) -> Decimal:
    sign = -1 if text.startswith("-") else 1
    value = Decimal(0)
    for part in text.lstrip("+-").replace("_", "").split(":"):
        value = value * 60 + Decimal(part)
    return sign * value


def _integer(value: int, kind: sa.Integer) -> tuple[Any, str | None]:
    bits = next(bits for cls, bits in INTEGER_BITS if isinstance(kind, cls))
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if not low <= value <= high:
        name = {16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}[bits]
        return None, f"{value} is outside {name}'s range ({low} to {high})"
    return value, None


def _decimal(value: Decimal, kind: sa.Numeric) -> tuple[Any, str | None]:
    scale = kind.scale or 0
    try:
        exact = value.quantize(Decimal(1).scaleb(-scale))
    except InvalidOperation:
        return None, f"{value} does not fit NUMERIC({kind.precision}, {scale})"
    if exact != value:
        return None, f"{value} has more than {scale} decimal places"
    if kind.precision is not None and len(exact.as_tuple().digits) > kind.precision:
        return None, f"{value} does not fit NUMERIC({kind.precision}, {scale})"
    return (exact.copy_abs() if exact == 0 else exact), None


def _unique_problems(table: RefTable, file: _File) -> list[str]:
    problems = []
    for unique in table.uniques:
        seen: dict[tuple[Any, ...], str] = {}
        for key, row in file.values.items():
            if any(row.get(c) is None for c in unique.columns):
                continue  # not given validly, or NULL: NULLs never collide in a UNIQUE constraint
            values = tuple(_comparable(row[c]) for c in unique.columns)
            if values in seen:
                first = file.origins[seen[values]].line_of(unique.columns[0])
                shown = ", ".join(f"{c} {row[c]!r}" for c in unique.columns)
                problems.append(
                    f"{file.origins[key].at(unique.columns[0])}: {shown} is also declared on "
                    f"line {first} ({unique.name}: no two rows may share it)"
                )
            else:
                seen[values] = key
    return problems


def _comparable(value: Any) -> Any:
    return repr(value) if isinstance(value, list) else value


def _reference_problems(table: RefTable, files: dict[str, _File]) -> list[str]:
    problems = []
    for column in table.columns:
        target = files.get(column.references or "")
        if target is None or not target.loaded:
            continue  # the referenced file is already reported as unreadable
        for key, row in files[table.name].values.items():
            value = row.get(column.name)
            if value is not None and value not in target.keys:
                problems.append(
                    f"{files[table.name].origins[key].at(column.name)}: {column.name} "
                    f"{value!r} is not declared in {column.references}.yaml"
                )
    return problems
