"""``scripts/refdata.py``: check declared reference data, generate its migration, lock files.

    refdata.py check                # files vs migrations vs enums, and the revision lock
    refdata.py check --live         # also the DATABASE_URL database against head (read-only)
    refdata.py revision -m MESSAGE  # write the data migration head -> declared files
    refdata.py lock [--rehash FILE] # record new revision files in alembic/versions.sha256

Exit status: 0 all agree (or done), 1 drift found, 2 bad input (invalid declared files,
an unreachable database, bad arguments).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from seed_data.db import (
    REPO_ROOT,
    DatabaseUrlError,
    configured_url,
    embedded_database_url,
    normalise_url,
    redact,
)
from seed_data.enums import LOOKUP_ENUMS
from seed_data.refdata.declared import REFERENCE_DIR, DeclarationError, Rows, load_declared
from seed_data.refdata.diff import describe, diff_all
from seed_data.refdata.lock import check_lock, record
from seed_data.refdata.migration import write_revision
from seed_data.refdata.state import current_revisions, read_rows, scratch_database_at_head
from seed_data.refdata.tables import reference_tables

EXIT_OK, EXIT_DRIFT, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    pass


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
    lock = commands.add_parser("lock", help="record new revision files' checksums")
    lock.add_argument("--rehash", nargs="+", default=(), metavar="FILE", help="re-record these")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = Config(str(args.config))
    script_location = Path(ScriptDirectory.from_config(config).dir)
    try:
        if args.command == "lock":
            return _lock(script_location, tuple(args.rehash))
        declared = load_declared(args.reference_dir)
        if args.command == "check":
            return _check(args, config, script_location, declared)
        return _revision(args, config, script_location, declared)
    except DeclarationError as error:
        print("error: the declared reference data is invalid:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _lock(script_location: Path, rehash: tuple[str, ...]) -> int:
    try:
        written = record(script_location, rehash)
    except FileNotFoundError as error:
        raise BadInput(str(error)) from None
    print("\n".join(f"recorded {name}" for name in written) or "nothing new to record")
    return EXIT_OK


def _check(args: argparse.Namespace, config: Config, location: Path, declared: dict) -> int:
    problems = check_lock(location).problems()
    problems += _enum_drift(declared)
    tables = reference_tables()
    head = _head_state(args, config)
    if diffs := diff_all(tables, head, declared):
        problems.append(
            "the declared files differ from the migrations' head; run "
            "`refdata.py revision -m ...` to write the migration:\n"
            + describe(diffs, "head", "files")
        )
    if args.live:
        problems += _live_drift(head, config)
    if problems:
        print("\n\n".join(f"DRIFT: {p}" for p in problems))
        return EXIT_DRIFT
    print(f"OK: {len(tables)} reference tables agree with head; every revision file is locked")
    return EXIT_OK


def _revision(args: argparse.Namespace, config: Config, location: Path, declared: dict) -> int:
    unlocked = check_lock(location).problems()
    if unlocked:
        raise BadInput("fix the revision lock first:\n  " + "\n  ".join(unlocked))
    diffs = diff_all(reference_tables(), _head_state(args, config), declared)
    if not diffs:
        print("nothing to change: the declared files already match head; no file written")
        return EXIT_OK
    path = write_revision(config, args.message, diffs)
    record(location)
    print(describe(diffs, "head", "files"))
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    print("review it, then run `alembic upgrade head`")
    return EXIT_OK


def _head_state(args: argparse.Namespace, config: Config) -> dict[str, Rows]:
    server = _scratch_server(args)
    try:
        with scratch_database_at_head(server, config) as engine, engine.connect() as conn:
            return read_rows(conn, reference_tables())
    except sa.exc.OperationalError as error:
        raise BadInput(
            f"cannot use {redact(server)} for a scratch database: {_first_line(error)}"
        ) from None


def _scratch_server(args: argparse.Namespace) -> URL:
    try:
        if args.scratch_url:
            return normalise_url(args.scratch_url)
        if configured_url() and not args.live:
            return normalise_url(configured_url())
        return embedded_database_url()
    except DatabaseUrlError as error:
        raise BadInput(str(error)) from None


def _live_drift(head: dict[str, Rows], config: Config) -> list[str]:
    raw = configured_url()
    if not raw:
        raise BadInput("--live checks the database in DATABASE_URL, which is not set")
    try:
        url = normalise_url(raw)
    except DatabaseUrlError as error:
        raise BadInput(str(error)) from None
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            revisions = current_revisions(conn)
            heads = set(ScriptDirectory.from_config(config).get_heads())
            if revisions != heads:
                return [
                    f"{redact(url)} is at {', '.join(sorted(revisions)) or 'no revision'}, "
                    f"head is {', '.join(sorted(heads))}: run `alembic upgrade head` there"
                ]
            live = read_rows(conn, reference_tables())
    except sa.exc.OperationalError as error:
        raise BadInput(f"cannot connect to {redact(url)}: {_first_line(error)}") from None
    finally:
        engine.dispose()
    if diffs := diff_all(reference_tables(), head, live):
        return [
            f"{redact(url)} has reference rows that differ from head (edited outside the "
            "migrations):\n" + describe(diffs, "head", "live")
        ]
    return []


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


def _first_line(error: sa.exc.DBAPIError) -> str:
    return str(error.orig or error).strip().splitlines()[0]
