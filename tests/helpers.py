"""What the migration tests share: alembic configs, row snapshots, schema fingerprints."""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from seed_data.db import REPO_ROOT, libpq_connection
from seed_data.migration_history import HISTORY_TABLE, KEPT_TABLES

ALEMBIC_INI = REPO_ROOT / "alembic.ini"
ALEMBIC_BIN = Path(sys.executable).with_name("alembic")


def config_for(engine: sa.Engine, **x_arguments: object) -> Config:
    """An alembic config that runs env.py against ``engine`` (env.py takes its own lock);
    ``x_arguments`` are what ``alembic -x name=value`` would pass."""
    config = Config(str(ALEMBIC_INI))
    config.attributes["connection"] = engine
    config.cmd_opts = argparse.Namespace(x=[f"{k}={v}" for k, v in x_arguments.items()])
    return config


@dataclass(frozen=True)
class Step:
    """One revision, and the revision it upgrades from ("base" for the first)."""

    revision: str
    down_revision: str
    file_stem: str


def revision_steps() -> list[Step]:
    """Every revision from base to head, in upgrade order."""
    return list(_repository_steps())


@functools.cache  # many test modules ask at import; the repository's files do not change
def _repository_steps() -> tuple[Step, ...]:
    script = ScriptDirectory.from_config(Config(str(ALEMBIC_INI)))
    scripts = list(script.walk_revisions("base", "heads"))[::-1]
    return tuple(
        Step(s.revision, s.down_revision or "base", Path(s.path).stem)  # type: ignore[arg-type]
        for s in scripts
    )


# Set by the next-revision drill (tests/test_next_revision_drill.py) to the head it found
# before adding its revisions.
DRILL_WALK_FROM = os.environ.get("DRILL_WALK_FROM")


def steps_to_cover(steps: list[Step]) -> list[Step]:
    """The steps a test that covers each revision covers: all of ``steps``; in the drill's
    grown copy, only those after DRILL_WALK_FROM, the ones the drill added. The run that
    started the drill covers the ones before them, from the same files, and covering them
    again would make the drill's cost grow with the history."""
    if DRILL_WALK_FROM is None:
        return steps
    starts = [n for n, step in enumerate(steps) if step.revision == DRILL_WALK_FROM]
    assert starts, f"DRILL_WALK_FROM={DRILL_WALK_FROM} is no revision of this history"
    return steps[starts[0] + 1 :]


def snapshot_rows(conn: sa.Connection, *, history: bool = True) -> dict[str, list[str]]:
    """Every row of every table, as sorted JSON text: equal snapshots mean equal contents.

    An empty ``alembic_version`` counts as absent: alembic creates it on its first run and
    leaves it behind, empty, after a downgrade to base.

    ``history=False`` leaves out ``migration_history``, for comparisons across migration
    steps that are expected to append to it (every upgrade or downgrade step does, and a
    downgrade never takes a row back): test those rows with :func:`history_rows`. Where
    nothing may change (a refused or failed step, a read-only check), keep it in.
    """
    tables = (
        run_prepared(conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        .scalars()
        .all()
    )
    if not history:
        # Not read at all: the one table that grows with every step of a walk.
        tables = [table for table in tables if table != HISTORY_TABLE]
    # One statement for every table: a walk over the history takes a snapshot per step.
    every_table = " UNION ALL ".join(
        f"SELECT CAST({_quoted(table, chr(39))} AS text),"
        f" ARRAY(SELECT to_jsonb(t)::text FROM {_quoted(table, chr(34))} AS t ORDER BY 1)"
        for table in tables
    )
    rows = dict(run_prepared(conn, every_table).all()) if tables else {}
    rows = {table: rows[table] for table in tables}
    if "alembic_version" in rows and not rows["alembic_version"]:
        del rows["alembic_version"]
    return rows


def _quoted(name: str, quote: str) -> str:
    """``name`` in ``quote``s, as a SQL literal (') or identifier (")."""
    return quote + name.replace(quote, quote * 2) + quote


def run_prepared(conn: sa.Connection, sql: str) -> sa.CursorResult[Any]:
    """``sql`` (without parameters) as a statement PostgreSQL plans once per connection.

    The snapshots' statements read catalogue views that take longer to plan than to run,
    and a walk over the history takes three snapshots per step. PostgreSQL plans a prepared
    statement again by itself when a table it reads is altered, dropped or made anew.
    """
    name = "snapshot_" + hashlib.sha256(sql.encode()).hexdigest()[:24]
    prepared = conn.connection.info.setdefault("prepared_snapshots", set())
    if name not in prepared:
        conn.exec_driver_sql(f"PREPARE {name} AS {sql}")
        prepared.add(name)
    return conn.exec_driver_sql(f"EXECUTE {name}")


def history_rows(conn: sa.Connection) -> list[dict[str, Any]]:
    """``migration_history``, oldest first ([] while the table does not exist)."""
    if not conn.scalar(sa.text(f"SELECT to_regclass('public.{HISTORY_TABLE}') IS NOT NULL")):
        return []
    rows = conn.execute(sa.text(f"SELECT *, xmin::text AS xmin FROM {HISTORY_TABLE} ORDER BY id"))
    return [dict(row._mapping) for row in rows]


def history_rows_since(conn: sa.Connection, before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``migration_history`` as :func:`history_rows` reads it, fetching only the rows
    appended since ``before`` was read, so a walk over a long history reads each row once,
    not once per step. The rows read before must be untouched (the table is append-only):
    their ids and ``xmin`` are compared, as an UPDATE gives a row a new ``xmin`` and a
    DELETE takes its id away."""
    if not before:
        return history_rows(conn)
    last = {"last": before[-1]["id"]}
    untouched = conn.execute(
        sa.text(f"SELECT id, xmin::text FROM {HISTORY_TABLE} WHERE id <= :last ORDER BY id"), last
    ).all()
    assert [tuple(row) for row in untouched] == [(r["id"], r["xmin"]) for r in before], (
        "migration_history rows changed: it is append-only"
    )
    appended = conn.execute(
        sa.text(f"SELECT *, xmin::text AS xmin FROM {HISTORY_TABLE} WHERE id > :last ORDER BY id"),
        last,
    )
    return before + [dict(row._mapping) for row in appended]


def history_appended(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict]:
    """The rows appended to ``migration_history`` between two reads; the rows read first
    must be untouched (the table is append-only)."""
    # Compared on the columns the first read had (a revision may have added columns since).
    columns = set(before[0]) if before else set()
    assert [{k: v for k, v in row.items() if k in columns} for row in after[: len(before)]] == (
        before
    ), "migration_history rows changed: it is append-only"
    return after[len(before) :]


def history_steps(conn: sa.Connection) -> list[tuple[str, str, str]]:
    """(revision, direction, method) of each ``migration_history`` row, oldest first."""
    return [(r["revision"], r["direction"], r["method"]) for r in history_rows(conn)]


SCHEMA_QUERIES = {
    # The catalogue, not information_schema.columns: its view costs more to plan than the
    # rest together, and its data_type leaves out lengths and precisions (varchar(32)).
    "columns": """
        SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
            || ' null=' || (NOT a.attnotnull) || ' default='
            || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
        FROM pg_attribute AS a
        JOIN pg_class AS c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
            AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> 'alembic_version'
    """,
    "constraints": """
        SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
        FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'alembic_version'
    """,
    "indexes": """
        SELECT indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'alembic_version'
    """,
    "functions": """
        SELECT p.oid::regprocedure::text || ' ' || md5(p.prosrc)
        FROM pg_proc AS p WHERE p.pronamespace = 'public'::regnamespace
    """,
    "triggers": """
        SELECT pg_get_triggerdef(t.oid) FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid
        WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
    """,
    "sequences": """
        SELECT sequencename || ' ' || data_type || ' ' || start_value || ' ' || increment_by
        FROM pg_sequences WHERE schemaname = 'public'
    """,
    "types": """
        SELECT t.typname || ' ' || t.typtype::text || ' '
            || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder)
                         FROM pg_enum WHERE enumtypid = t.oid), '')
        FROM pg_type AS t
        WHERE t.typnamespace = 'public'::regnamespace AND t.typelem = 0 AND t.typrelid = 0
    """,
    "views": """
        SELECT c.relname || ' ' || c.relkind::text || ' ' || md5(pg_get_viewdef(c.oid))
        FROM pg_class AS c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('v', 'm')
    """,
}


# The functions the kept tables' triggers call (left out with those tables).
KEPT_FUNCTIONS = {
    "kept_functions": "SELECT tgfoid::regprocedure::text FROM pg_trigger WHERE"
    f" tgrelid::regclass::text IN ({', '.join(_quoted(t, chr(39)) for t in KEPT_TABLES)})"
}


def schema_fingerprint(conn: sa.Connection, *, kept: bool = True) -> dict[str, list[str]]:
    """Columns, constraints, indexes, functions, triggers, sequences, types and views of the
    public schema, sorted.

    alembic_version is left out: it is alembic's bookkeeping, created on the first run and
    kept (empty) after a downgrade to base; its rows are in :func:`snapshot_rows`.
    ``kept=False`` leaves out the tables downgrades keep (``KEPT_TABLES``), with their
    triggers, sequences and the triggers' functions: compare those on their own across
    downgrades.
    """
    queries = SCHEMA_QUERIES if kept else {**SCHEMA_QUERIES, **KEPT_FUNCTIONS}
    # One statement for every kind: a walk over the history takes one per step.
    every_kind = " UNION ALL ".join(
        f"SELECT CAST('{kind}' AS text), item FROM ({query}) AS {kind} (item)"
        for kind, query in queries.items()
    )
    found: dict[str, list[str]] = {kind: [] for kind in queries}
    for kind, item in run_prepared(conn, every_kind):
        found[kind].append(item)
    found = {kind: sorted(items) for kind, items in found.items()}
    if kept:
        return found
    functions = set(found.pop("kept_functions"))
    on_kept = [f" ON {schema}{t} " for t in KEPT_TABLES for schema in ("", "public.")]
    of_kept = {
        "columns": lambda item: item.split(".")[0] in KEPT_TABLES,
        "constraints": lambda item: item.split(" ")[0] in KEPT_TABLES,
        "indexes": lambda item: any(f" ON public.{t} " in item for t in KEPT_TABLES),
        "functions": lambda item: item.split(" ")[0] in functions,
        "triggers": lambda item: any(on in item for on in on_kept),
        "sequences": lambda item: any(item.startswith(f"{t}_") for t in KEPT_TABLES),
    }
    return {
        kind: [i for i in items if not of_kept.get(kind, lambda _: False)(i)]
        for kind, items in found.items()
    }


def current_revision(conn: sa.Connection) -> str | None:
    exists = conn.scalar(sa.text("SELECT to_regclass('public.alembic_version') IS NOT NULL"))
    if not exists:
        return None
    return conn.scalar(sa.text("SELECT version_num FROM alembic_version"))


def alembic_env(url: URL | str | None) -> dict[str, str]:
    """The environment for an ``alembic`` subprocess aimed at ``url`` (None: no database)."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if isinstance(url, URL):
        url = url.render_as_string(hide_password=False)
    if url is not None:
        env["DATABASE_URL"] = url
    return env


def run_alembic(
    *args: str, url: URL | str | None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``alembic`` command, as an operator would, against ``url`` (``env``:
    more environment variables)."""
    return subprocess.run(
        [str(ALEMBIC_BIN), *args],
        cwd=REPO_ROOT,
        env={**alembic_env(url), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def insert_customer(conn: sa.Connection, customer_id: str) -> int:
    """Insert a customer (only the external id matters to these tests); return its id."""
    return conn.scalar(
        sa.text("""
            INSERT INTO customers (customer_id, first_name, last_name, email, phone,
                                   date_of_birth, password_hash)
            VALUES (:customer_id, 'Ada', 'Jones', lower(:customer_id) || '@example.co.uk',
                    '07700 900000', '1985-04-12', 'x')
            RETURNING id
        """),
        {"customer_id": customer_id},
    )


def insert_account(
    conn: sa.Connection, customer: int, number: str, product: str, account_type: str
) -> None:
    conn.execute(
        sa.text("""
            INSERT INTO accounts (account_number, customer_id, product_code, account_type_code,
                                  status_code)
            VALUES (:number, :customer, :product, :account_type, 'active')
        """),
        {"number": number, "customer": customer, "product": product, "account_type": account_type},
    )


def run_psql(
    bin_dir: Path, engine: sa.Engine, script: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    """Run a SQL script with psql, as a DBA would: stop at the first error (``options``:
    more of psql's, such as ``-1``)."""
    target, env = libpq_connection(engine.url)
    return subprocess.run(
        [
            str(bin_dir / "psql"),
            "--no-psqlrc",
            "--quiet",
            "-v",
            "ON_ERROR_STOP=1",
            *options,
            "-f",
            str(script),
            target,
        ],
        capture_output=True,
        text=True,
        env={**env, "PGCLIENTENCODING": "UTF8"},
        check=False,
    )


def apply_with_psql(bin_dir: Path, engine: sa.Engine, script: Path) -> None:
    """:func:`run_psql`, which must succeed."""
    result = run_psql(bin_dir, engine, script)
    assert result.returncode == 0, f"psql -f {script.name} failed:\n{result.stderr}"
