"""``refdata.py revision``: build the migration in a temporary copy, prove it, then write it.

Nothing reaches ``alembic/versions/`` or the lock until the candidate has, on the scratch
database at head: upgraded to exactly the declared rows, downgraded to exactly head's rows,
upgraded again to the same rows, and done the same through the SQL that ``alembic upgrade
--sql`` / ``downgrade --sql`` write for it. Only then is the file written (to a temporary
name, renamed into place) and recorded in the lock.

Alembic makes the candidate in a copy of the script directory (revision id, dated file
name, parent), without post-write hooks, so that a missing ruff, a message full of quotes
or any failure leaves nothing behind.
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError, rev_id

from seed_data import alembic_runs
from seed_data.db_errors import classify, driver_error, first_line
from seed_data.refdata.declared import Declared, Rows
from seed_data.refdata.diff import key_text
from seed_data.refdata.errors import BadInput
from seed_data.refdata.files import write_atomically
from seed_data.refdata.heads import create_date, load_script, single_head
from seed_data.refdata.migration import Revision, TablePlan, render, render_merge
from seed_data.refdata.rules import rows_named
from seed_data.refdata.state import alembic_config, current_revisions, fingerprints, read_rows
from seed_data.refdata.tables import reference_tables

SHOWN_ROWS = 3


@dataclass(frozen=True)
class Candidate:
    """A generated revision, written only in the temporary copy of the script directory:
    its source, and its data files (name -> text) for the directory named like it."""

    path: Path
    revision: Revision
    source: str
    data: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def data_dir(self) -> str:
        return self.path.stem


def _copy_of_scripts(config: Config, workdir: Path) -> Config:
    """A config for a copy of the script directory under ``workdir`` (never the real one).
    Earlier revisions' data files, which may be large, are linked rather than copied: only
    the new revision's rows are read, and it writes its own. Compiled revisions
    (``__pycache__``) come along: the proof loads every revision file."""
    location = Path(load_script(config).dir)
    copy = workdir / location.name
    versions = location / "versions"
    linked = {d.name for d in versions.iterdir() if d.is_dir() and d.with_suffix(".py").is_file()}
    shutil.copytree(
        location,
        copy,
        ignore=lambda _, entries: {e for e in entries if e in linked},
    )
    for name in linked:
        (copy / "versions" / name).symlink_to((versions / name).resolve())
    return alembic_config(config, script_location=copy)


def slug_words(message: str) -> str:
    """What alembic gets as the message: the file name's slug is made of its words (the
    template only needs to give alembic a loadable file; the toolkit writes the rest)."""
    return " ".join(re.findall(r"\w+", message))


def build(config: Config, workdir: Path, message: str, plans: list[TablePlan]) -> Candidate:
    """Have alembic create the revision in a copy of the scripts under ``workdir``; fill it in."""
    script = load_script(_copy_of_scripts(config, workdir))
    head = single_head(script)
    created = script.generate_revision(rev_id(), slug_words(message), head=head, refresh=True)
    assert created is not None
    path = Path(created.path)
    revision = Revision(created.revision, head, create_date(created, precise=True) or "", message)
    rendered = render(revision, plans, path.stem)
    path.write_text(rendered.source, encoding="utf-8")
    if rendered.data:
        path.with_suffix("").mkdir()
        for name, text in rendered.data.items():
            (path.with_suffix("") / name).write_text(text, encoding="utf-8")
    return Candidate(path, revision, rendered.source, rendered.data)


def build_merge(
    config: Config, workdir: Path, message: str, heads: list[str], base: str
) -> Candidate:
    """Have alembic create the merge revision of ``heads`` in a copy of the scripts."""
    created = command.merge(_copy_of_scripts(config, workdir), heads, message=slug_words(message))
    assert created is not None
    date = create_date(created, precise=True) or ""
    source = render_merge(created.revision, heads, date, message, base)
    path = Path(created.path)
    path.write_text(source, encoding="utf-8")
    return Candidate(path, Revision(created.revision, ", ".join(heads), date, message), source)


def prove(
    config: Config,
    engine: sa.Engine,
    candidate: Candidate,
    plans: list[TablePlan],
    head_rows: dict[str, Rows],
    declared: Declared,
) -> None:
    """Apply the candidate to the scratch database every way it will be applied; BadInput if
    any way fails or leaves other rows than it should. The database ends at head again."""
    head, new = candidate.revision.down_revision, candidate.revision.revision
    location = candidate.path.parent.parent
    online = alembic_config(config, connection=engine, script_location=location)
    # Loaded once, now that the candidate's file holds its real text, for all six runs:
    # loading every revision file is the part of a run that grows with the history.
    script = load_script(online)
    tables = reference_tables()

    def state() -> tuple[set[str], dict[str, Rows]]:
        with engine.connect() as conn:
            return current_revisions(conn), read_rows(conn, tables)

    def fingerprint() -> tuple[set[str], dict[str, str | None]]:
        with engine.connect() as conn:
            return current_revisions(conn), fingerprints(conn, tables)

    # Reading every row takes a while at 20,000 rows: each state is read whole once, and
    # the later steps that must reach it again compare the database's digest of it.
    head_print = fingerprint()
    prints: dict[str, tuple[set[str], dict[str, str | None]]] = {}

    def expect(expected: tuple[set[str], dict[str, Rows]], side: str, after: str) -> None:
        if side in prints and fingerprint() == prints[side]:
            return
        revisions, rows = state()
        if (revisions, rows) != expected:
            raise BadInput(
                f"the generated revision leaves other rows than expected after {after} "
                f"({_first_difference(revisions, rows, expected, declared)}): something in the "
                "database changes the values (a trigger, a rule), or this is a bug in "
                "refdata.py; nothing was written or recorded"
            )
        prints.setdefault(side, fingerprint())

    expected = {"head": ({head}, head_rows), "declared": ({new}, dict(declared))}
    prints["head"] = head_print

    def offline(direction: str, span: str) -> None:
        _execute(engine, _offline_sql(config, script, direction, span))

    def upgrade() -> None:
        alembic_runs.upgrade(online, new, script=script)

    def downgrade() -> None:
        alembic_runs.downgrade(online, head, script=script)

    steps: list[tuple[str, Callable[[], object], str]] = [
        ("upgrade", upgrade, "declared"),
        ("downgrade", downgrade, "head"),
        ("upgrade again", upgrade, "declared"),
        ("downgrade again", downgrade, "head"),
        ("upgrade --sql", lambda: offline("upgrade", f"{head}:{new}"), "declared"),
        ("downgrade --sql", lambda: offline("downgrade", f"{new}:{head}"), "head"),
    ]
    for doing, step, side in steps:
        try:
            step()
        except Exception as error:  # generated code: whatever it raises is a refusal
            raise _refusal(error, doing, engine, plans, declared) from None
        expect(expected[side], side, doing)


def _first_difference(
    revisions: set[str],
    rows: dict[str, Rows],
    expected: tuple[set[str], dict[str, Rows]],
    declared: Declared,
) -> str:
    """Where the database and the expectation first differ, as a reader can find it."""
    if revisions != expected[0]:
        return f"alembic_version is {', '.join(sorted(revisions))}"
    for table, have in rows.items():
        want = expected[1].get(table, {})
        for key in sorted(have.keys() | want.keys()):
            if have.get(key) != want.get(key):
                where = declared.where(table, key) if (table, key) in declared.origins else None
                return f"{table} {key_text(key)}" + (f", declared at {where}" if where else "")
    return "no row differs"


def _offline_sql(config: Config, script: ScriptDirectory, direction: str, span: str) -> str:
    buffer = io.StringIO()
    offline = alembic_config(config, script_location=Path(script.dir), output_buffer=buffer)
    getattr(alembic_runs, direction)(offline, span, sql=True, script=script)
    return buffer.getvalue()


# The COPY statements of data-file revisions, each followed in the script by its rows and a
# line that is only \. (psql reads them from the script).
COPY_FROM_SCRIPT = re.compile(
    r"^(COPY [^\n]* FROM STDIN WITH \(FORMAT csv, HEADER true\));\n(.*?)^\\\.$",
    re.MULTILINE | re.DOTALL,
)


def _execute(engine: sa.Engine, sql: str) -> None:
    """Run a ``--sql`` script as psql would: its own BEGIN/COMMIT, no parameter markers,
    and the rows of each COPY read from the script."""
    raw = engine.raw_connection()
    try:
        raw.driver_connection.autocommit = True  # type: ignore[union-attr]
        with raw.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            done = 0
            for copy in COPY_FROM_SCRIPT.finditer(sql):
                if sql[done : copy.start()].strip():
                    cursor.execute(sql[done : copy.start()])
                cursor.copy_expert(copy[1], io.StringIO(copy[2]))
                done = copy.end()
            if sql[done:].strip():
                cursor.execute(sql[done:])
    finally:
        raw.close()


def _refusal(
    error: Exception, doing: str, engine: sa.Engine, plans: list[TablePlan], declared: Declared
) -> BadInput:
    """A one-line refusal naming the declared rows involved (``file:line``) and the rule."""
    prefix = f"the generated revision fails on the scratch database ({doing})"
    suffix = "nothing was written or recorded"
    orig = driver_error(error)
    if not isinstance(orig, psycopg2.Error):
        said = " ".join(str(error).split()) or type(error).__name__
        if not isinstance(error, CommandError):
            said = f"{type(error).__name__}: {said} (a bug in refdata.py)"
        return BadInput(f"{prefix}: {_involved(None, None, plans, declared)}: {said}; {suffix}")
    if failure := classify(error, engine.url):
        return BadInput(f"cannot prove the revision on a scratch database: {failure.message}")
    diag = orig.diag
    rule = diag.constraint_name or diag.column_name
    said = (f"{rule}: " if rule else "") + first_line(error)
    if diag.message_detail and len(diag.message_detail) <= 200:
        said += f" ({diag.message_detail})"
    rows = _involved(error, diag.table_name, plans, declared)
    return BadInput(f"{prefix}: {rows}: {said}; {suffix}")


def _involved(
    error: BaseException | None, table: str | None, plans: list[TablePlan], declared: Declared
) -> str:
    """``file:line`` of the rows an error is about: the ones it names, else the ones the
    revision adds or changes in its table (or in every table, when it names none)."""
    places = []
    for p in plans:
        if table is not None and p.table.name != table:
            continue
        column, named = rows_named(error, p.table, declared[p.table.name]) if error else (None, [])
        keys = named or [row[p.table.key] for row in p.diff.added] + list(p.diff.changed)
        places += [declared.where(p.table.name, k, column) for k in keys]
        if not named:
            places += [f"{p.table.name} {row[p.table.key]} (removed)" for row in p.diff.removed]
    more = f" and {len(places) - SHOWN_ROWS} more" if len(places) > SHOWN_ROWS else ""
    return (", ".join(places[:SHOWN_ROWS]) + more) or "the revision's rows"


def write_files(versions: Path, candidate: Candidate) -> Path:
    """Put the revision's data files, then the revision itself, in place atomically (never
    a half-written file; the revision, which alembic loads, comes last). If any of it fails,
    what was written is taken away again."""
    path = versions / candidate.name
    data_dir = versions / candidate.data_dir
    if path.exists() or (candidate.data and data_dir.exists()):
        raise BadInput(f"{path} already exists: nothing was written")
    try:
        if candidate.data:
            data_dir.mkdir()
            for name, text in candidate.data.items():
                write_atomically(data_dir / name, text)
        write_atomically(path, candidate.source)
    except BaseException:
        remove_revision_files(path)
        raise
    return path


def remove_revision_files(path: Path) -> None:
    """A revision file and its data directory, if it has one."""
    path.unlink(missing_ok=True)
    shutil.rmtree(path.with_suffix(""), ignore_errors=True)
