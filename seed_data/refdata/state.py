"""Reference rows as a database holds them, and a scratch database to find head's state."""

from __future__ import annotations

import argparse
import hashlib
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy.engine import URL

from seed_data import alembic_runs
from seed_data.db import redact
from seed_data.db_errors import INVALID_CATALOG, OBJECT_IN_USE, classify, first_line, sqlstate
from seed_data.models import Base
from seed_data.refdata.declared import Rows
from seed_data.refdata.errors import BadInput, database_refusal
from seed_data.refdata.heads import load_script
from seed_data.refdata.lock import file_checksum
from seed_data.refdata.signals import stop_signals_deferred
from seed_data.refdata.tables import RefTable

SCRATCH_PREFIX = "refdata_scratch_"
# A database at head kept on the scratch server, which the next command copies (CREATE
# DATABASE ... TEMPLATE) instead of replaying the whole history, so that `check` and
# `revision` cost the same at 300 revisions as at 10. Its name carries a digest of the
# migrations up to its revision (env.py, then each revision's file and data files, base
# first): the next command copies the newest one its own history passes through and
# upgrades only the revisions after it (none, or the one just written); the analysis of
# two heads copies the one at their common ancestor. At most three are kept: the newest
# head, the state it was copied from, and the oldest kept state on its history.
HEAD_COPY_PREFIX = "refdata_head_"


def read_rows(
    conn: sa.Connection, tables: tuple[RefTable, ...], *, as_they_are: bool = False
) -> dict[str, Rows]:
    """Every reference table's rows, keyed by natural key (only columns the models know).

    ``as_they_are`` reads a database at any revision, not only head: a table that does not
    exist yet has no rows, and a row has only the columns its table has at that revision.
    """
    state: dict[str, Rows] = {}
    inspector = sa.inspect(conn) if as_they_are else None
    for table in tables:
        model = Base.metadata.tables[table.name]
        names = table.column_names
        if inspector is not None:
            if not inspector.has_table(table.name):
                state[table.name] = {}
                continue
            present = {column["name"] for column in inspector.get_columns(table.name)}
            names = tuple(name for name in names if name in present)
        query = sa.select(*(model.c[name] for name in names)).order_by(model.c[table.key])
        key = names.index(table.key)
        state[table.name] = {
            row[key]: dict(zip(names, row, strict=True)) for row in conn.execute(query)
        }
    return state


def fingerprints(conn: sa.Connection, tables: tuple[RefTable, ...]) -> dict[str, str | None]:
    """Each table's contents as the database digests them (md5 of every row's text, in key
    order): equal digests mean equal rows, without bringing a row to Python."""
    digests = {}
    quote = conn.dialect.identifier_preparer.quote
    for table in tables:
        digests[table.name] = conn.exec_driver_sql(
            f"SELECT md5(string_agg(t::text, E'\\n' ORDER BY t.{quote(table.key)}))"
            f" FROM {quote(table.name)} AS t"
        ).scalar()
    return digests


def current_revisions(conn: sa.Connection) -> set[str]:
    return set(MigrationContext.configure(conn).get_current_heads())


# Set on the toolkit's own configs: env.py then skips the deploy validation, because these
# runs migrate scratch databases the toolkit makes and drops (the lock and the history
# are what `refdata.py check` reports on; a check must not be refused by what it checks).
SCRATCH_RUN = "refdata_scratch_run"


def alembic_config(
    base: Config,
    *,
    connection: sa.Engine | sa.Connection | None = None,
    script_location: Path | None = None,
    output_buffer: TextIO | None = None,
) -> Config:
    """A config like ``base`` for the toolkit's own runs: quiet, no post-write hooks.

    ``connection`` is what env.py migrates (instead of DATABASE_URL); ``script_location``
    points at another copy of the migrations (the one a candidate revision is proved in);
    ``output_buffer`` receives ``--sql`` output.
    """
    config = Config(
        base.config_file_name,
        toml_file=base.toml_file_name,
        ini_section=base.config_ini_section,
        output_buffer=output_buffer,
        cmd_opts=argparse.Namespace(quiet=True, x=[]),  # quiet: no "Generating ..." lines
        attributes={"skip_logging_config": True, SCRATCH_RUN: True},
    )
    if connection is not None:
        config.attributes["connection"] = connection
    if script_location is not None:
        config.set_main_option("script_location", str(script_location).replace("%", "%%"))
    config.file_config.remove_section("post_write_hooks")
    return config


@contextmanager
def scratch_database(
    server: URL, config: Config, target: str | None = "head", copy_of: sa.Engine | None = None
) -> Iterator[sa.Engine]:
    """A throwaway database on ``server``, migrated to ``target`` (None: left as it is
    made), dropped afterwards. ``copy_of`` makes it a copy of another scratch database on
    the same server (which must have no open connection).

    It is dropped on every way out (an error, Ctrl-C, SIGTERM turned into an exception);
    if even that fails, stderr names it so that it can be dropped by hand.
    """
    name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    engine = sa.create_engine(server.set(database=name), poolclass=sa.NullPool)
    # A scratch database needs no durability: commits need not wait for the WAL flush.
    sa.event.listen(engine, "connect", _no_commit_wait)
    template = f' TEMPLATE "{copy_of.url.database}"' if copy_of is not None else ""
    # A kept copy serves any target on its history: a command at head, and the analysis
    # of two heads at their common ancestor. Only a head is kept.
    along = "heads" if target == "head" else target
    states = history_states(config, along) if along is not None and copy_of is None else []
    attempted = created = at_target = False
    try:
        try:
            with admin.connect() as conn:
                attempted = True
                copied = _copy_of_kept(conn, name, states) if states else None
                if copied is None:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"{template}')
                created = True
                at_target = copied is not None and copied == states[-1]
        except sa.exc.DBAPIError as error:
            failure = classify(error, server)
            if failure is None or failure.cause != "permission":
                raise database_refusal(
                    f"cannot create a scratch database on {redact(server)}", error, server
                ) from None
            raise BadInput(
                f"cannot create a scratch database on {redact(server)}: "
                f"{first_line(error, server)}: the role needs CREATEDB; grant it, or point "
                "--scratch-url at a server and role that have it"
            ) from None
        if target is not None and not at_target:
            doing = f"cannot migrate a scratch database to {target}"
            keeping = bool(states) and target == "head"
            # Replayed from base: head's parent is kept too, where the next revision
            # written beside this head starts (another branch's, a test's, a
            # teammate's), so that one does not replay the whole history again.
            parent = _parent_of_head(config) if keeping and copied is None else None
            if parent is not None:
                migrate_scratch(engine, config, parent, doing)
                _keep(admin, name, states[:-1], copied)
            migrate_scratch(engine, config, target, doing)
            if keeping:
                _keep(admin, name, states, copied)
        yield engine
    finally:
        with stop_signals_deferred():  # a signal now would leave the database behind
            engine.dispose()
            if attempted:
                _drop(admin, name, server, report=created)
            admin.dispose()


def history_states(config: Config, target: str) -> list[str]:
    """The digest of the migrations up to each revision of ``target``'s history, base first
    (the last is ``target``'s; ``heads``: every revision)."""
    script = load_script(config)
    digest = hashlib.sha256()
    for path in sorted(Path(script.dir).glob("*.py")):  # env.py
        digest.update(path.read_bytes())
    states = []
    for revision in reversed(list(script.walk_revisions("base", target))):
        source = Path(revision.path)
        data = source.with_suffix("")
        files = [
            source,
            *(sorted(p for p in data.rglob("*") if p.is_file()) if data.is_dir() else []),
        ]
        for path in files:
            digest.update(f"{path.name}\0{file_checksum(path)}\0".encode())
        states.append(digest.hexdigest()[:32])
    return states


def _parent_of_head(config: Config) -> str | None:
    """Head's one parent (None for a merge, the first revision, or heads): every revision
    but head is one of its ancestors, so a database at it is the state before head's."""
    script = load_script(config)
    heads = script.get_heads()
    if len(heads) != 1:
        return None  # migrating to "head" says what is wrong
    parent = script.get_revision(heads[0]).down_revision
    return parent if isinstance(parent, str) else None


def _copy_of_kept(conn: sa.Connection, name: str, states: list[str]) -> str | None:
    """Make ``name`` a copy of the kept database nearest head along this history, and say
    which state it is; None, and nothing made, when none is kept (or it is in use)."""
    kept = _kept_copies(conn)
    for state in reversed(states):
        if f"{HEAD_COPY_PREFIX}{state}" in kept:
            try:
                conn.exec_driver_sql(
                    f'CREATE DATABASE "{name}" TEMPLATE "{HEAD_COPY_PREFIX}{state}"'
                )
            except sa.exc.DBAPIError as error:
                if sqlstate(error) in (INVALID_CATALOG, OBJECT_IN_USE):
                    return None  # dropped or being copied by another command meanwhile
                raise
            return state
    return None


def _kept_copies(conn: sa.Connection) -> set[str]:
    query = sa.text("SELECT datname FROM pg_database WHERE starts_with(datname, :prefix)")
    return set(conn.execute(query, {"prefix": HEAD_COPY_PREFIX}).scalars())


def _keep(admin: sa.Engine, name: str, states: list[str], copied: str | None) -> None:
    """Keep a copy of ``name`` (just migrated to head) for its state, ``states[-1]``, and
    drop every other kept copy but two: the one it was copied from, and the oldest one on
    its history, ``states``. Those are where the history was before this head and where
    work on it began (a test, a developer trying a revision or going back to the main
    branch, starts there again); anything else is a state this history left."""
    state = states[-1]
    try:
        with admin.connect() as conn:
            present = _kept_copies(conn)
            on_history = [s for s in states if f"{HEAD_COPY_PREFIX}{s}" in present]
            stay = {state, copied, *on_history[:1]}
            kept = {f"{HEAD_COPY_PREFIX}{s}" for s in stay if s is not None}
            conn.exec_driver_sql(f'CREATE DATABASE "{HEAD_COPY_PREFIX}{state}" TEMPLATE "{name}"')
            for other in sorted(present - kept):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{other}"')
    except sa.exc.DBAPIError:
        # Only a saving: another command kept it first, or is copying one meant to go
        # (which a later command drops), or the server is short of space. This command's
        # own work does not depend on it.
        return


def _no_commit_wait(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    dbapi_connection.commit()


def migrate_scratch(
    engine: sa.Engine,
    config: Config,
    target: str,
    doing: str,
    on_step: Callable[..., None] | None = None,
) -> None:
    """Upgrade a scratch database to ``target``; a failure is one line starting ``doing``.
    ``on_step`` is called after each step, in the run's transaction (alembic's
    ``on_version_apply``).

    The run is one transaction on a connection handed to env.py (its caller's path): a
    scratch database needs no commit per step, lock timeouts, retries or watcher, and a
    long history costs what its revisions do. (What a deploy runs, env.py's own path, is
    what ``revision`` proves the new revision on.)
    """
    try:
        with engine.begin() as conn:
            migrating = alembic_config(config, connection=conn)
            if on_step is not None:
                migrating.attributes["on_version_apply"] = [on_step]
            alembic_runs.upgrade(migrating, target, script=load_script(config))
    except sa.exc.DBAPIError as error:
        raise database_refusal(doing, error, engine.url) from None
    except CommandError as error:
        raise BadInput(f"{doing}: {error}") from None


def _drop(admin: sa.Engine, name: str, server: URL, report: bool) -> None:
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except sa.exc.DBAPIError as error:
        if report:
            print(
                f"warning: could not drop the scratch database {name} on {redact(server)} "
                f"({first_line(error, server)}): drop it by hand",
                file=sys.stderr,
            )
