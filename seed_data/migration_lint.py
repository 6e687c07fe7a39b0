"""The project's own lint rules for revisions, beyond squawk's (tests/test_migration_lint.py).

squawk judges statements one at a time. What makes a revision hold a lock too long is
often two statements together: a table lock (``ALTER TABLE``, ``CREATE INDEX`` without
``CONCURRENTLY``, ``LOCK``, ``TRUNCATE`` ...) and, later in the same transaction, a
statement that changes rows of a business table. The lock is held until ``COMMIT``, so
every app query on that table waits for as long as the rows take, which grows with the
table. ``lock_timeout`` does not help: it bounds the migration's waits, not its holds.

* ``lock-then-write`` (from the revision's ``--sql`` text): rows of a business table
  change in a transaction that has already taken a table lock. Reference tables are small
  and exempt, as are alembic's and env.py's bookkeeping and tables the same transaction
  created (nobody else can see them yet).
* ``drop-constraint-renamed`` (from the revision's source): ``op.drop_constraint(name,
  type_=..., if_exists=True)`` without ``op.f()``. The metadata's naming convention
  renames a check constraint (``ck_<table>_<name>``), so the statement drops a constraint
  that does not exist, and ``IF EXISTS`` makes the miss silent.

:func:`tables_named` also serves the live-migration harness: the tables a revision's SQL
names are the ones its traffic and its blocker use.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from seed_data.migration_history import HISTORY_TABLE
from seed_data.models import NAMING_CONVENTION, REFERENCE_TABLES

LOCK_THEN_WRITE = "lock-then-write"
DROP_CONSTRAINT_RENAMED = "drop-constraint-renamed"
# Tables whose rows may change under a lock: small, or bookkeeping written in every step.
EXEMPT_TABLES = frozenset({*REFERENCE_TABLES, "alembic_version", HISTORY_TABLE})
_CONSTRAINT_KIND = {"check": "ck", "unique": "uq", "foreignkey": "fk", "primary": "pk"}

_NAME = r'(?:"[^"]+"|[A-Za-z_][\w$]*)(?:\s*\.\s*(?:"[^"]+"|[A-Za-z_][\w$]*))?'
_WRITES = re.compile(
    rf"\b(?:UPDATE\s+(?:ONLY\s+)?(?P<update>{_NAME})\s+(?:(?:AS\s+)?\w+\s+)?SET\b"
    rf"|DELETE\s+FROM\s+(?:ONLY\s+)?(?P<delete>{_NAME})"
    rf"|INSERT\s+INTO\s+(?P<insert>{_NAME})"
    rf"|MERGE\s+INTO\s+(?:ONLY\s+)?(?P<merge>{_NAME})"
    rf"|COPY\s+(?P<copy>{_NAME})(?:\s*\([^)]*\))?\s+FROM)",
    re.IGNORECASE,
)
_REFERENCES = re.compile(rf"\bREFERENCES\s+(?P<name>{_NAME})", re.IGNORECASE)
# Statements that take a lock app reads or writes wait for, and the mode they take.
_LOCKS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE | re.DOTALL), mode)
    for pattern, mode in (
        (rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<name>{_NAME})", "ACCESS EXCLUSIVE"),
        (
            rf"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)(?:.*?)\bON\s+(?:ONLY\s+)?(?P<name>{_NAME})",
            "SHARE",
        ),
        (
            rf"^DROP\s+INDEX\s+(?!CONCURRENTLY)(?:IF\s+EXISTS\s+)?(?P<index>{_NAME})",
            "ACCESS EXCLUSIVE",
        ),
        (rf"^LOCK\s+(?:TABLE\s+)?(?:ONLY\s+)?(?P<name>{_NAME})", "ACCESS EXCLUSIVE"),
        (rf"^TRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?(?P<name>{_NAME})", "ACCESS EXCLUSIVE"),
        (rf"^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<name>{_NAME})", "ACCESS EXCLUSIVE"),
        (
            rf"^CREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\s+.*?\bON\s+(?P<name>{_NAME})",
            "SHARE ROW EXCLUSIVE",
        ),
        (rf"^DROP\s+TRIGGER\s+.*?\bON\s+(?P<name>{_NAME})", "ACCESS EXCLUSIVE"),
        (rf"^REINDEX\s+(?!.*\bCONCURRENTLY\b)\w+\s+(?P<name>{_NAME})", "ACCESS EXCLUSIVE"),
        (rf"^CLUSTER\s+(?P<name>{_NAME})", "ACCESS EXCLUSIVE"),
        (
            rf"^REFRESH\s+MATERIALIZED\s+VIEW\s+(?!CONCURRENTLY)(?P<name>{_NAME})",
            "ACCESS EXCLUSIVE",
        ),
    )
)
_LOCK_MODE = re.compile(r"\bIN\s+([A-Z ]+?)\s+MODE\b", re.IGNORECASE)
_CREATE_TABLE = re.compile(
    rf"^CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>{_NAME})",
    re.IGNORECASE,
)
_ONLY_VALIDATES = re.compile(
    rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?{_NAME}\s+VALIDATE\s+CONSTRAINT\s+{_NAME}\s*$",
    re.IGNORECASE,
)
_BEGIN = re.compile(r"^(?:BEGIN|START\s+TRANSACTION)\b", re.IGNORECASE)
_END = re.compile(r"^(?:COMMIT|END|ABORT|ROLLBACK)\b(?!\s+TO\b)", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class Statement:
    line: int  # of its first character, from 1
    text: str  # as written, comments removed
    code: str  # the same with string literals and dollar-quoted bodies emptied

    @property
    def head(self) -> str:
        return " ".join(self.text.split())[:120]


# psql reads the rows of ``COPY ... FROM STDIN`` from the script's next lines, up to a line
# that is only ``\.`` (data-file revisions write their rows so in ``--sql`` mode).
_COPY_ROWS = re.compile(
    r"^(COPY\b[^\n]*\bFROM\s+STDIN\b[^\n]*;[ \t]*\n)(.*?^\\\.[ \t]*)$",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)


def without_copy_rows(sql: str) -> str:
    """The script with the rows of each ``COPY ... FROM STDIN`` (and their ``\\.``) blanked,
    line numbers kept: rows are data, and a quote or ``;`` in them is not SQL."""
    return _COPY_ROWS.sub(lambda m: m[1] + "\n" * m[2].count("\n"), sql)


def statements(sql: str) -> Iterator[Statement]:
    """The statements of a SQL script, split where psql would split them."""
    sql = without_copy_rows(sql)
    text, code, line, start_line = [], [], 1, None
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        if sql.startswith("/*", i):
            end, depth, i = i + 2, 1, i + 2
            while end < n and depth:
                if sql.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif sql.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                else:
                    end += 1
            line += sql.count("\n", i, end)
            i = end
            continue
        if char == ";":
            if start_line is not None:
                yield Statement(start_line, "".join(text).strip(), "".join(code).strip())
            text, code, start_line = [], [], None
            i += 1
            continue
        if start_line is None and not char.isspace():
            start_line = line
        quoted = _quoted_end(sql, i)
        if quoted > i:
            piece = sql[i:quoted]
            text.append(piece)
            # Keep identifiers ("...") and dollar-quoted bodies, which can hold statements
            # (DO blocks); empty single-quoted strings, which are only data.
            code.append("''" if char in "'Ee" and piece[-1] == "'" else piece)
            line += piece.count("\n")
            i = quoted
            continue
        text.append(char)
        code.append(char)
        line += char == "\n"
        i += 1
    if start_line is not None and "".join(text).strip():
        yield Statement(start_line, "".join(text).strip(), "".join(code).strip())


_DOLLAR = re.compile(r"\$(?:[A-Za-z_]\w*)?\$")


def _quoted_end(sql: str, i: int) -> int:
    """Where the literal, quoted identifier or dollar-quoted body starting at ``i`` ends
    (``i`` itself when none starts there)."""
    char = sql[i]
    if char in "Ee" and sql.startswith("'", i + 1) and (i == 0 or not sql[i - 1].isalnum()):
        j = i + 2
        while j < len(sql) and sql[j] != "'":
            j += 2 if sql[j] == "\\" else 1
        return min(j + 1, len(sql))
    if char in "'\"":
        j = i + 1
        while j < len(sql):
            if sql[j] == char:
                if sql.startswith(char, j + 1):  # '' or "" inside
                    j += 2
                    continue
                return j + 1
            j += 1
        return len(sql)
    if char == "$" and (match := _DOLLAR.match(sql, i)):
        end = sql.find(match.group(), match.end())
        return len(sql) if end < 0 else end + len(match.group())
    return i


def table_name(name: str) -> str:
    """An identifier as PostgreSQL resolves it, schema ``public`` left out."""
    parts = [p.strip() for p in re.split(r'\.(?=(?:[^"]*"[^"]*")*[^"]*$)', name)]
    last = parts[-1]
    return last[1:-1] if last.startswith('"') else last.lower()


@dataclass(frozen=True)
class Lock:
    table: str
    mode: str
    statement: Statement


def _locks(statement: Statement) -> list[Lock]:
    code = statement.code
    if _ONLY_VALIDATES.match(code):
        return []  # SHARE UPDATE EXCLUSIVE: blocks no app read or write
    found = []
    for pattern, mode in _LOCKS:
        if match := pattern.match(code):
            if match.groupdict().get("index"):
                table = f"the table of index {table_name(match['index'])}"
            else:
                table = table_name(match["name"])
            if pattern.pattern.startswith("^LOCK") and (given := _LOCK_MODE.search(code)):
                mode = " ".join(given.group(1).upper().split())
            found.append(Lock(table, mode, statement))
            break
    # A foreign key locks the table it points at too (against writes).
    for match in _REFERENCES.finditer(code):
        found.append(Lock(table_name(match["name"]), "SHARE ROW EXCLUSIVE", statement))
    return found


def _writes(statement: Statement) -> list[str]:
    if re.match(r"^CREATE\b", statement.code, re.IGNORECASE):
        return []  # a function's body runs when it is called, not here
    return [
        table_name(next(name for name in match.groups() if name))
        for match in _WRITES.finditer(statement.code)
    ]


def lock_then_write(sql: str, exempt: Iterable[str] = EXEMPT_TABLES) -> list[Finding]:
    """Statements changing rows of a business table after a table lock in one transaction."""
    exempt = set(exempt)
    findings: list[Finding] = []
    in_transaction = False
    held: list[Lock] = []
    created: set[str] = set()
    for statement in statements(sql):
        code = statement.code
        if _BEGIN.match(code):
            in_transaction, held, created = True, [], set()
            continue
        if _END.match(code):
            in_transaction, held, created = False, [], set()
            continue
        if match := _CREATE_TABLE.match(code):
            created.add(table_name(match["name"]))
        for table in _writes(statement):
            if table in exempt or table in created or not held:
                continue
            lock = held[0]
            findings.append(
                Finding(
                    LOCK_THEN_WRITE,
                    statement.line,
                    f"{statement.head[:60]} changes rows of {table} in the transaction that"
                    f" took {lock.mode} on {lock.table} at line {lock.statement.line}"
                    f" ({lock.statement.head[:60]}): that lock is held while the rows change,"
                    " and app queries wait for it. Commit after the lock-taking step, then"
                    " change the rows in batches, each its own transaction"
                    " (docs/schema-revisions.md, Backfills)",
                )
            )
        if in_transaction:
            held += [lock for lock in _locks(statement) if lock.table not in created]
    return findings


def drop_constraint_renamed(
    source: str, naming_convention: dict[str, str] | None = None
) -> list[Finding]:
    """``op.drop_constraint(name, type_=..., if_exists=True)`` calls whose name the naming
    convention rewrites (a name not wrapped in ``op.f()``)."""
    convention = NAMING_CONVENTION if naming_convention is None else naming_convention
    findings = []
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "drop_constraint"
        ):
            continue
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        if_exists = keywords.get("if_exists")
        if not (isinstance(if_exists, ast.Constant) and if_exists.value is True):
            continue
        name = node.args[0] if node.args else keywords.get("constraint_name")
        if _is_op_f(name):
            continue
        kind = keywords.get("type_", node.args[2] if len(node.args) > 2 else None)
        if not isinstance(kind, ast.Constant) or not isinstance(kind.value, str):
            continue
        key = _CONSTRAINT_KIND.get(kind.value)
        if key is None or "%(constraint_name)s" not in convention.get(key, ""):
            continue
        shown = ast.unparse(name) if name is not None else "?"
        findings.append(
            Finding(
                DROP_CONSTRAINT_RENAMED,
                node.lineno,
                f"op.drop_constraint({shown}, type_={kind.value!r}, if_exists=True): the"
                f" naming convention ({key}: {convention[key]!r}) renames it, so this drops a"
                " constraint that does not exist, and IF EXISTS hides the miss. Wrap the"
                f" name in op.f(): op.drop_constraint(op.f({shown}), ...)",
            )
        )
    return findings


def _is_op_f(node: ast.expr | None) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "f"
    )


def revision_source_findings(path: Path) -> list[Finding]:
    return drop_constraint_renamed(path.read_text(encoding="utf-8"))


def tables_named(sql: str, tables: Iterable[str]) -> list[str]:
    """Which of ``tables`` a script names anywhere outside comments and string literals
    (function bodies included: a trigger's function touches the tables it names)."""
    words = {
        table_name(word)
        for statement in statements(sql)
        for word in re.findall(_NAME, statement.code)
    }
    return sorted(set(tables) & words)
