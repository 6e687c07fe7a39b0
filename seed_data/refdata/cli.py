"""``scripts/refdata.py``: check, migrate, blame and merge declared reference data.

    refdata.py check                # files vs migrations vs enums, and the revision lock
    refdata.py check --live         # also the DATABASE_URL database against head (read-only)
    refdata.py revision -m MESSAGE  # write the data migration head -> declared files
    refdata.py log TABLE KEY        # every revision that changed one reference row
    refdata.py log TABLE KEY --live # ... and when each was applied to DATABASE_URL
    refdata.py merge -m MESSAGE     # merge two heads that change different rows
    refdata.py lock [--rehash FILE] # record new revision files in alembic/versions.sha256
    refdata.py lock --forget FILE   # un-record a deleted, never released revision
    refdata.py lock --rehash FILE --keep-earlier REASON  # a released file rewritten on purpose
    refdata.py lock --init          # start the lock file of a new project

Exit status: 0 all agree (or done), 1 drift found (heads not merged yet, or that conflict,
included), 2 bad input (invalid declared files, an unusable database, bad arguments, an
unknown table or key, a forked history where one head is needed, a missing or malformed
lock), 130 or 143 interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import configparser
import json
import logging
import os
import sys
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import psycopg2
import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy.engine import URL

from seed_data.db import (
    REPO_ROOT,
    DatabaseUrlError,
    configured_url,
    embedded_database_url,
    normalise_url,
)
from seed_data.db_errors import classify, first_line
from seed_data.enums import LOOKUP_ENUMS
from seed_data.models import REFERENCE_TABLES
from seed_data.refdata.blame import blame, live_view, render_json, render_text
from seed_data.refdata.branches import analyse_heads
from seed_data.refdata.declared import (
    REFERENCE_DIR,
    DeclarationError,
    Declared,
    Rows,
    load_declared,
)
from seed_data.refdata.diff import SHOWN_ROWS, describe, diff_all, key_text
from seed_data.refdata.errors import BadInput
from seed_data.refdata.files import one_writer, shown
from seed_data.refdata.heads import load_script, single_head
from seed_data.refdata.live import live_problems
from seed_data.refdata.lock import check_lock, lock_file, record, versions_dir
from seed_data.refdata.migration import TablePlan, plan
from seed_data.refdata.revision import (
    Candidate,
    build,
    build_merge,
    prove,
    remove_revision_files,
    write_files,
)
from seed_data.refdata.rules import rule_problems
from seed_data.refdata.signals import Interrupted, stop_signals_deferred, stop_signals_raise
from seed_data.refdata.state import read_rows, scratch_database
from seed_data.refdata.tables import RefTable, missing_at_head, reference_tables, referenced

EXIT_OK, EXIT_DRIFT, EXIT_BAD_INPUT = 0, 1, 2
SHOWN_PROBLEMS = 40


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="refdata.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", type=Path, default=REPO_ROOT / "alembic.ini", help="alembic.ini to use"
    )
    parser.add_argument(
        "--reference-dir",
        type=Path,
        default=REFERENCE_DIR,
        help="the declared files (default seed_data/reference)",
    )
    parser.add_argument(
        "--scratch-url",
        help="server for the scratch database that is migrated to head and dropped "
        "(default: DATABASE_URL's server, or the embedded one; with --live, the embedded one)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="compare declared files, head and the lock")
    check.add_argument(
        "--live",
        action="store_true",
        help="also compare the DATABASE_URL database with head, read-only",
    )
    revision = commands.add_parser("revision", help="write the migration head -> declared")
    revision.add_argument("-m", "--message", required=True)
    log = commands.add_parser(
        "log", help="every revision that changed one reference row, oldest first"
    )
    log.add_argument("table", help=f"a reference table: {', '.join(REFERENCE_TABLES)}")
    log.add_argument("key", help="the row's code (slug for faqs)")
    log.add_argument(
        "--live",
        action="store_true",
        help="also say when each revision was applied to the DATABASE_URL database",
    )
    log.add_argument("--json", action="store_true", help="write JSON to stdout")
    merge = commands.add_parser(
        "merge", help="write the merge revision of heads that change different rows"
    )
    merge.add_argument("-m", "--message", required=True)
    lock = commands.add_parser("lock", help="record new revision files' checksums")
    lock.add_argument(
        "--rehash", nargs="+", default=(), metavar="FILE", help="re-record these (names or paths)"
    )
    lock.add_argument(
        "--forget",
        nargs="+",
        default=(),
        metavar="FILE",
        help="un-record deleted revision files that were never released (and their data files)",
    )
    lock.add_argument("--init", action="store_true", help="create the lock file (new projects)")
    lock.add_argument(
        "--keep-earlier",
        metavar="REASON",
        help="with --rehash of a released revision rewritten on purpose: keep the text it"
        " replaces as an earlier text databases may have run, with this reason",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with stop_signals_raise(), _quiet_libraries():
        try:
            config, location = _config(args.config)
            if args.command == "lock":
                return _lock(location, args)
            if args.command == "check":
                return _check(args, config, location)
            if args.command == "log":
                return _log(args, config)
            if args.command == "merge":
                return _merge(args, config, location)
            return _revision(args, config, location)
        except DeclarationError as error:
            print("error: the declared reference data is invalid:", file=sys.stderr)
            for problem in error.problems[:SHOWN_PROBLEMS]:
                print(f"  {problem}", file=sys.stderr)
            if len(error.problems) > SHOWN_PROBLEMS:
                print(f"  ... and {len(error.problems) - SHOWN_PROBLEMS} more", file=sys.stderr)
            return EXIT_BAD_INPUT
        except BadInput as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except (sa.exc.DBAPIError, psycopg2.Error) as error:
            # A server failure outside the steps that give their own context (the session
            # terminated mid-check, say): still one classified line.
            url = _given_url(args)
            failure = classify(error, url)
            said = failure.message if failure else first_line(error, url)
            print(f"error: the database failed: {said}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            print(f"error: {where}{error.strerror or error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except Interrupted as stop:
            print(
                f"error: interrupted by {stop}; the scratch database (if any) was dropped and "
                "nothing was left half-written",
                file=sys.stderr,
            )
            return stop.exit_status


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Only our own output: no INFO lines from alembic's runs in the scratch database, and
    no logged traceback when Ctrl-C lands while SQLAlchemy closes a connection (it logs,
    then re-raises; our one line says what happened)."""
    levels = {"alembic": logging.WARNING, "sqlalchemy.pool": logging.CRITICAL}
    loggers = {logging.getLogger(name): level for name, level in levels.items()}
    previous = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in previous.items():
            logger.setLevel(level)


def _config(path: Path) -> tuple[Config, Path]:
    """The alembic config and its script directory, or a one-line BadInput."""
    if path.is_dir():
        raise BadInput(f"--config {path} is a directory: give the alembic.ini file")
    if not path.is_file():
        raise BadInput(f"--config {path}: no such file")
    config = Config(str(path))
    try:
        location = config.get_main_option("script_location")
    except (configparser.Error, UnicodeDecodeError) as error:
        said = str(error).splitlines()[0]
        raise BadInput(f"--config {path} is not a readable alembic.ini ({said})") from None
    if not location:
        raise BadInput(f"--config {path} has no script_location in [alembic]: not an alembic.ini?")
    return config, Path(load_script(config).dir)


def _lock(location: Path, args: argparse.Namespace) -> int:
    if args.keep_earlier is not None and (
        not args.rehash
        or not args.keep_earlier.strip()
        or any(unicodedata.category(c) in ("Cc", "Cs") for c in args.keep_earlier)
    ):
        raise BadInput("--keep-earlier needs --rehash FILE and a one-line reason")
    with one_writer(versions_dir(location)):
        changes = record(
            location,
            tuple(args.rehash),
            init=args.init,
            forget=tuple(args.forget),
            keep_earlier=args.keep_earlier and args.keep_earlier.strip(),
        )
    print("\n".join(changes) or "nothing new to record")
    return EXIT_OK


def _check(args: argparse.Namespace, config: Config, location: Path) -> int:
    problems = check_lock(location).problems()
    script = load_script(config)
    heads = sorted(script.get_heads())
    if len(heads) > 1:
        # No single head to compare the files or a live database with: first, the heads.
        report = analyse_heads(_scratch_server(args), config, script, heads)
        print("\n\n".join(f"DRIFT: {p}" for p in problems + report.problems(Path(script.versions))))
        return EXIT_DRIFT
    head = single_head(script)
    live_url = _live_url() if args.live else None
    declared = load_declared(args.reference_dir)
    problems += _enum_drift(declared)
    tables = reference_tables()
    try:
        with scratch_database(_scratch_server(args), config) as engine:
            head_rows = _head_rows(engine, declared)
    except BadInput as error:
        if not problems:
            raise
        # An edited revision (or data file) can be what makes head unreachable: that is
        # the drift to report; the comparison has to wait for it to be fixed.
        problems.append(f"the declared files were not compared with head: {error}")
        print("\n\n".join(f"DRIFT: {p}" for p in problems))
        return EXIT_DRIFT
    if diffs := diff_all(tables, head_rows, declared):
        problems.append(
            "the declared files differ from the migrations' head; run "
            "`refdata.py revision -m ...` to write the migration:\n"
            + describe(diffs, "head", "files")
        )
    notes: list[str] = []
    if live_url is not None:
        live_drift, notes = live_problems(live_url, script, head, head_rows, declared, tables)
        problems += live_drift
    for note in notes:
        print(f"note: {note}")
    if problems:
        print("\n\n".join(f"DRIFT: {p}" for p in problems))
        return EXIT_DRIFT
    print(f"OK: {len(tables)} reference tables agree with head; every revision file is locked")
    return EXIT_OK


def _log(args: argparse.Namespace, config: Config) -> int:
    table = _reference_table(args.table)
    live_url = _live_url() if args.live else None
    script = load_script(config)
    head = single_head(script)
    # The live database first: a refusal there comes before any replay.
    live = live_view(live_url, script) if live_url is not None else None
    entries = blame(_scratch_server(args), config, script, head, table, args.key)
    if args.json:
        print(json.dumps(render_json(table, args.key, entries, live), indent=2, default=str))
    else:
        print(render_text(table, args.key, entries, live))
    return EXIT_OK


def _reference_table(name: str) -> RefTable:
    tables = {table.name: table for table in reference_tables()}
    if name not in tables:
        raise BadInput(
            f"{name!r} is not a reference table: `refdata.py log` takes one of "
            f"{', '.join(tables)}, and a row's key"
        )
    return tables[name]


def _merge(args: argparse.Namespace, config: Config, location: Path) -> int:
    message = _message(args.message)
    with one_writer(versions_dir(location)):
        _ready_to_write(location, "the merge")
        script = load_script(config, again=True)
        heads = sorted(script.get_heads())
        if len(heads) < 2:
            print(
                f"nothing to merge: {shown(versions_dir(location))} has one head; no file written"
            )
            return EXIT_OK
        report = analyse_heads(_scratch_server(args), config, script, heads)
        if not report.safe:
            print("\n\n".join(f"DRIFT: {p}" for p in report.problems(Path(script.versions))))
            print(
                f"error: the heads {', '.join(heads)} conflict (above): no merge revision was "
                "written",
                file=sys.stderr,
            )
            return EXIT_DRIFT
        with tempfile.TemporaryDirectory(prefix="refdata-merge-") as workdir:
            candidate = build_merge(config, Path(workdir), message, heads, report.base)
            _write_and_record(location, candidate)
    print(
        f"replayed {', '.join(heads)} from their common ancestor {report.base}: they change "
        "different reference rows and give the same rows in either order"
    )
    print(f"wrote {shown(versions_dir(location) / candidate.name)}")
    print(f"recorded it in {shown(lock_file(location))}")
    return EXIT_OK


def _ready_to_write(location: Path, what: str) -> None:
    """Refuse before any work when the file or its lock line could not be written, or when
    the lock has problems (nothing is stacked on an unreviewed revision)."""
    for directory in (versions_dir(location), location):
        if not os.access(directory, os.W_OK):
            raise BadInput(f"cannot write to {directory}: {what} and its lock line go there")
    if unlocked := check_lock(location).problems():
        raise BadInput("fix the revision lock first: " + " ".join(unlocked))


def _write_and_record(location: Path, candidate: Candidate) -> Path:
    """The proved file into alembic/versions and its line into the lock: both or neither,
    with Ctrl-C and SIGTERM held back for that moment."""
    with stop_signals_deferred():
        path = write_files(versions_dir(location), candidate)
        try:
            record(location)
        except BaseException:
            remove_revision_files(path)
            raise
    return path


def _revision(args: argparse.Namespace, config: Config, location: Path) -> int:
    message = _message(args.message)
    with one_writer(versions_dir(location)):
        return _write_revision(args, config, location, message)


def _write_revision(args: argparse.Namespace, config: Config, location: Path, message: str) -> int:
    _ready_to_write(location, "the revision")
    single_head(load_script(config, again=True))
    declared = load_declared(args.reference_dir)
    tables = reference_tables()
    with scratch_database(_scratch_server(args), config) as engine:
        head_rows = _head_rows(engine, declared)
        diffs = diff_all(tables, head_rows, declared)
        if not diffs:
            print("nothing to change: the declared files already match head; no file written")
            return EXIT_OK
        plans = plan(diffs, head_rows, declared)
        with tempfile.TemporaryDirectory(prefix="refdata-revision-") as workdir:
            candidate = build(config, Path(workdir), message, plans)
            prove(config, engine, candidate, plans, head_rows, declared)
    print(describe(diffs, "head", "files"))
    path = _write_and_record(location, candidate)
    print(
        "proved on a scratch database: upgrade, downgrade and upgrade again, online and "
        "through --sql, give the declared rows and head's rows back"
    )
    print(f"wrote {shown(path)}")
    print(f"recorded it in {shown(lock_file(location))}")
    for note in _removal_notes(plans):
        print(note)
    print("review it, then run `alembic upgrade head`")
    return EXIT_OK


def _head_rows(engine: sa.Engine, declared: Declared) -> dict[str, Rows]:
    """Head's reference rows, once the database has accepted every declared row.

    Only the tables whose declared rows differ from head's are tried (with the tables that
    refer to them, which trying empties): the others' rows are in the database already.
    """
    tables = reference_tables()
    with engine.connect() as conn:
        if missing := missing_at_head(conn, tables):
            raise BadInput(missing)
        head_rows = read_rows(conn, tables)
    differing = {t.name for t in tables if declared[t.name] != head_rows[t.name]}
    for table in tables:  # parents first: a table referring to one that is tried is too
        if table.depends_on() & differing:
            differing.add(table.name)
    tried = tuple(t for t in tables if t.name in differing)
    if tried and (problems := rule_problems(engine, tried, declared)):
        raise DeclarationError(problems)
    return head_rows


def _message(raw: str) -> str:
    message = raw.strip()
    if not message:
        raise BadInput("-m needs a message saying what the revision does")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in message):
        raise BadInput("-m must be one line of text, without tabs or control characters")
    return message


def _removal_notes(plans: list[TablePlan]) -> list[str]:
    """For rows deleted from a table other tables refer to: they may still be in use."""
    notes = []
    for p in plans:
        if p.diff.removed and referenced(p.table.name):
            shown_keys = [key_text(row[p.table.key]) for row in p.diff.removed[:SHOWN_ROWS]]
            more = len(p.diff.removed) - len(shown_keys)
            keys = ", ".join(shown_keys) + (f" and {more:,} more" if more else "")
            retire = (
                " If they may still be in use, retire them instead (is_active: false)."
                if p.table.can_retire
                else ""
            )
            notes.append(
                f"note: this revision deletes {p.table.name} {keys}; its upgrade stops (and "
                "changes nothing) on a database whose business rows still use them. Ask "
                f"production first: `refdata.py check --live`.{retire}"
            )
    return notes


def _scratch_server(args: argparse.Namespace) -> URL:
    try:
        if args.scratch_url:
            return normalise_url(args.scratch_url)
        if configured_url() and not getattr(args, "live", False):
            return normalise_url(configured_url())  # type: ignore[arg-type]
    except DatabaseUrlError as error:
        raise BadInput(str(error)) from None
    try:
        return embedded_database_url()
    except Exception as error:  # the embedded server's own failures come in many types
        said = first_line(error)
        raise BadInput(
            f"cannot start the embedded PostgreSQL for a scratch database ({said}); set "
            "--scratch-url or DATABASE_URL to use another server"
        ) from None


def _given_url(args: argparse.Namespace) -> URL | None:
    """The URL the user gave (for masking its secrets in an error), if it parses."""
    try:
        return normalise_url(args.scratch_url or configured_url() or "")
    except DatabaseUrlError:
        return None


def _live_url() -> URL:
    raw = configured_url()
    if not raw:
        raise BadInput("--live checks the database in DATABASE_URL, which is not set")
    try:
        return normalise_url(raw)
    except DatabaseUrlError as error:
        raise BadInput(str(error)) from None


def _enum_drift(declared: dict[str, Rows]) -> list[str]:
    problems = []
    for table, enum in LOOKUP_ENUMS.items():
        codes, members = set(declared[table]), {member.value for member in enum}
        if codes != members:
            problems.append(
                f"seed_data/enums.py {enum.__name__} does not match {table}.yaml: "
                f"add {sorted(codes - members) or 'nothing'}, remove {sorted(members - codes) or 'nothing'}"
            )
    return problems
