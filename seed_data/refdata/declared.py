"""The declared reference data: ``seed_data/reference/<table>.yaml`` (or ``.csv``), loaded
and validated.

Each YAML file is a list of mappings, one per row, with every column of the table. A large
table (hundreds of rows and up, usually imported from a published list) may be declared
as ``<table>.csv`` instead: a header row naming every column, then one row a line (an
empty cell is NULL; a list column holds a JSON array). Every table marked
``ReferenceData`` in ``seed_data/models.py`` has exactly one of the two files.
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

import csv
import io
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import partial
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

from seed_data.models import Base
from seed_data.refdata.files import shown
from seed_data.refdata.tables import RefColumn, RefTable, reference_tables

try:  # libyaml: the same node tree, several times faster (PyYAML's wheels include it)
    from yaml.cyaml import CParser
except ImportError:  # pragma: no cover - a PyYAML built without libyaml
    CParser = None

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "reference"

Row = dict[str, Any]
Rows = dict[str, Row]  # natural key -> row

PLAIN = "!refdata-plain"  # the tag our resolver gives every unquoted scalar
TEXT = "!refdata-quoted"  # ... and every quoted or block scalar written without a tag
DECLARED_SUFFIXES = (".yaml", ".csv")
MODELS = "seed_data/models.py"
HOW_TO_ADD = "docs/reference-data.md#adding-a-reference-table"
NULLS = {"", "~", "null", "Null", "NULL"}
TRUE, FALSE = {"true", "True", "TRUE"}, {"false", "False", "FALSE"}
YAML11_BOOLEANS = {"y", "yes", "n", "no", "on", "off"}
WHOLE = re.compile(r"[-+]?[0-9]+")
DECIMAL = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")
EXPONENT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")
# Any character _text() refuses (control characters but newline, tab, surrogates): text
# without one, nearly all of it, is accepted without looking at each character in Python.
REFUSED_CHARACTER = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
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
    """Tags every plain scalar PLAIN and every quoted one TEXT, so that each column reads
    it by its own type; a tag written in the file (``!!str``) stays, and is refused."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return PLAIN
        if kind is yaml.ScalarNode and implicit[1]:
            return TEXT
        return super().resolve(kind, value, implicit)


class _Composer(Reader, Scanner, Parser, Composer, _Resolver):
    """PyYAML's reader, scanner, parser and composer: the node tree, with line numbers."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Resolver.__init__(self)


if CParser is not None:

    class _FastComposer(CParser, _Resolver):  # type: ignore[misc, valid-type]
        """libyaml's parser and composer with our resolver; a file it refuses is parsed
        again by :class:`_Composer`, whose messages the refusals quote."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
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
    problems = _unknown_files(directory, {t.name for t in tables})
    files = {t.name: _load_table(directory, t, problems) for t in tables}
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


def _unknown_files(directory: Path, tables: set[str]) -> list[str]:
    """A line per declared file that belongs to no reference table, saying what to add."""
    problems = []
    models = {
        mapper.local_table.name: mapper.class_.__name__
        for mapper in Base.registry.mappers
        if isinstance(mapper.local_table, sa.Table)
    }
    for path in sorted(p for p in directory.iterdir() if p.suffix in DECLARED_SUFFIXES):
        name = path.stem
        if name in tables:
            continue
        if name in models:
            problems.append(
                f"{path}:1: {name} is not marked as reference data: in {MODELS}, add "
                f"ReferenceData to the bases of {models[name]} (class {models[name]}"
                f"(ReferenceData, Base)); see {HOW_TO_ADD}"
            )
        else:
            problems.append(
                f"{path}:1: no model has __tablename__ = {name!r}: add one to {MODELS}, "
                f"marked as reference data (class ...(ReferenceData, Base)), and a schema "
                f"revision that creates the table; see {HOW_TO_ADD}"
            )
    return problems


def _load_table(directory: Path, table: RefTable, problems: list[str]) -> _File:
    """The table's declared file, ``<table>.yaml`` or ``<table>.csv``: exactly one."""
    paths = [directory / f"{table.name}{suffix}" for suffix in DECLARED_SUFFIXES]
    present = [path for path in paths if path.exists()]
    if len(present) > 1:
        problems.append(
            f"{present[1]}: {table.name} is declared twice (also in {present[0].name}): keep one"
        )
        return _File()
    if not present:
        problems.append(
            f"{paths[0]}: missing: {table.name} is marked as reference data in {MODELS}; "
            f"declare its rows there (a list of rows, or [] for none), or in {paths[1].name}"
        )
        return _File()
    if present[0].suffix == ".csv":
        return _load_csv(present[0], table, problems)
    return _load_file(present[0], table, problems)


def _read_text(path: Path, problems: list[str]) -> str | None:
    try:
        return _decode(path, path.read_bytes())
    except OSError as error:
        problems.append(f"{path}: cannot read the file ({error.strerror})")
    except ValueError as error:
        problems.append(str(error))
    return None


def _load_file(path: Path, table: RefTable, problems: list[str]) -> _File:
    result = _File()
    text = _read_text(path, problems)
    if text is None:
        return result
    parsed, root = _parse(path, text, problems)
    if not parsed:
        return result
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


def _parse(path: Path, text: str, problems: list[str]) -> tuple[bool, yaml.Node | None]:
    """(whether it parsed, the root node: None for an empty file); a refusal is reported.

    libyaml parses; a file it refuses is parsed again by PyYAML's own parser, whose
    messages the refusals quote.
    """
    if CParser is not None:
        fast = _FastComposer(text)
        try:
            return True, fast.get_single_node()
        except yaml.YAMLError:
            pass
        finally:
            fast.dispose()
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
        return False, None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        said = " ".join(str(error.problem or error.context).split())
        if error.context and error.context_mark and error.problem:
            context = error.context.removeprefix("while ").replace("parsing ", "", 1)
            said += f" (in {context} that starts on line {error.context_mark.line + 1})"
        problems.append(f"{where}: not valid YAML: {said}")
        return False, None
    except yaml.YAMLError as error:
        problems.append(f"{path}: not valid YAML: {' '.join(str(error).split())}")
        return False, None
    finally:
        if composer is not None:
            composer.dispose()
    return True, root


def _load_csv(path: Path, table: RefTable, problems: list[str]) -> _File:
    """``<table>.csv``: a header naming every column once, then one row a line."""
    result = _File()
    text = _read_text(path, problems)
    if text is None:
        return result
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            problems.append(f"{path}: the file is empty: write the header row ({_columns(table)})")
            return result
        if (problem := _header_problem(header, table)) is not None:
            problems.append(f"{path}:1: {problem}")
            return result
        result.loaded = True
        readers = [(c.name, header.index(c.name), _cell_reader(c)) for c in table.columns]
        line = reader.line_num + 1
        for cells in reader:
            _load_csv_row(path, line, table, cells, len(header), readers, result, problems)
            line = reader.line_num + 1
    except csv.Error as error:
        problems.append(f"{path}:{reader.line_num}: not valid CSV: {error}")
    return result


def _columns(table: RefTable) -> str:
    return ",".join(table.column_names)


def _header_problem(header: list[str], table: RefTable) -> str | None:
    unknown = [name for name in header if name not in table.column_names]
    missing = [name for name in table.column_names if name not in header]
    twice = sorted({name for name in header if header.count(name) > 1})
    said = [
        *([f"unknown column {', '.join(unknown)} for {table.name}"] if unknown else []),
        *([f"missing column {', '.join(missing)}"] if missing else []),
        *([f"column {', '.join(twice)} given twice"] if twice else []),
    ]
    if not said:
        return None
    return "; ".join(said) + f": the header must name each column once ({_columns(table)})"


CellReader = Callable[[str], tuple[Any, "str | None"]]


def _load_csv_row(
    path: Path,
    line: int,
    table: RefTable,
    cells: list[str],
    width: int,
    readers: list[tuple[str, int, CellReader]],
    out: _File,
    problems: list[str],
) -> None:
    if len(cells) != width:
        extra = len(cells) - width
        counted = f"{extra} more" if extra > 0 else f"{-extra} fewer"
        problems.append(f"{path}:{line}: {counted} cell(s) than the header has columns")
        return
    valid = True
    row: Row = {}
    for name, position, read in readers:
        value, problem = read(cells[position])
        if problem:
            problems.append(f"{path}:{line}: {name}: {problem}")
            valid = False
        else:
            row[name] = value
    raw_key = next(cells[position] for name, position, _ in readers if name == table.key)
    _add_row(path, line, {}, table, row, raw_key, valid, out, problems)


PLAIN_WHOLE = re.compile(r"-?(?:0|[1-9][0-9]*)")
PLAIN_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


def _cell_reader(column: RefColumn) -> CellReader:
    """Reads one column's cells: the usual valid forms straight away, anything else (and
    so every refusal, with its message) through :func:`_cell`. A table of 20,000 rows has
    hundreds of thousands of cells."""
    kind = column.type
    slow = partial(_cell, column)
    if isinstance(kind, sa.String):
        length = kind.length

        def text(cell: str) -> tuple[Any, str | None]:
            fits = cell and (length is None or len(cell) <= length) and "\\." not in cell
            return (cell, None) if fits and not REFUSED_CHARACTER.search(cell) else slow(cell)

        return text
    if isinstance(kind, sa.Boolean):
        known = {"true": True, "false": False}
        return lambda cell: (known[cell], None) if cell in known else slow(cell)
    if isinstance(kind, sa.Integer):
        return lambda cell: _integer(int(cell), kind) if PLAIN_WHOLE.fullmatch(cell) else slow(cell)
    if isinstance(kind, sa.Numeric):
        return lambda cell: (
            _decimal(Decimal(cell), kind) if PLAIN_DECIMAL.fullmatch(cell) else slow(cell)
        )
    if isinstance(kind, JSONB):
        lists: dict[str, tuple[Any, str | None]] = {}  # a list column repeats a few values

        def items(cell: str) -> tuple[Any, str | None]:
            if cell not in lists:
                lists[cell] = slow(cell)
            value, problem = lists[cell]
            return (list(value) if value is not None else None), problem

        return items
    return slow


def _cell(column: RefColumn, text: str) -> tuple[Any, str | None]:
    """One CSV cell read by its column's type: empty is NULL; a list column holds JSON."""
    if text == "":
        return _null(column, " (an empty cell is NULL)")
    if not isinstance(column.type, JSONB):
        return _typed(column, text)
    try:
        items = json.loads(text)
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        return None, f'expected a JSON list of texts, like ["a", "b"], got {text!r}'
    for position, item in enumerate(items, start=1):
        _, problem = _text(item, None)
        if problem:
            return None, f"item {position} {problem}"
    return items, None


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
    raw_key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
    _add_row(path, line, lines, table, row, raw_key, len(problems) == before, out, problems)


def _add_row(
    path: Path,
    line: int,
    lines: dict[str, int],
    table: RefTable,
    row: Row,
    raw_key: str | None,
    valid: bool,
    out: _File,
    problems: list[str],
) -> None:
    """Keep a read row under its key (an invalid key as written: other rows may refer to
    it, and must not be reported again for that)."""
    key = row.get(table.key, raw_key)
    if not isinstance(key, str):
        return
    if key in out.keys:
        problems.append(
            f"{path}:{line}: duplicate {table.key} {key!r} (first declared on line "
            f"{out.origins[key].line if key in out.origins else '?'})"
        )
        return
    out.keys.add(key)
    out.origins[key] = Origin(path, line, lines)
    if valid:
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
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        return None, f"the tag {tag} is not supported: write the value without a tag"
    if node.tag == PLAIN and node.value in NULLS:
        return _null(column, "; quote it if you mean that text")
    if node.tag == TEXT and not isinstance(kind, sa.String | JSONB):
        return None, f"expected {_expected(kind)}, got the quoted text {node.value!r}: unquote it"
    return _typed(column, node.value)


def _null(column: RefColumn, text_hint: str) -> tuple[Any, str | None]:
    """NULL for a nullable column; else what is wrong (with the hint, for text columns)."""
    if column.nullable:
        return None, None
    hint = text_hint if isinstance(column.type, sa.String) else ""
    return None, f"must have a value (the column is NOT NULL){hint}"


def _typed(column: RefColumn, text: str) -> tuple[Any, str | None]:
    """A non-empty scalar read by its column's type."""
    kind = column.type
    if isinstance(kind, JSONB):
        return None, f"expected {_expected(kind)}, got {text!r}"
    if isinstance(kind, sa.String):  # Text too
        return _text(text, kind.length)
    if isinstance(kind, sa.Boolean):
        return _boolean(text)
    if isinstance(kind, sa.Numeric | sa.Integer):
        return _number(text, kind)
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
    if "\\." in value and "\\." in value.split("\n"):
        return None, (
            "has a line that is only \\., which ends the rows of a COPY in a `--sql` script: "
            "change that line"
        )
    if REFUSED_CHARACTER.search(value) is None:
        return value, None
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
    if EXPONENT.fullmatch(text):
        return None, f"{text}: write the number in plain digits, without an exponent"
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
