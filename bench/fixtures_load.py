"""Benchmark: the fixtures command against the ways people usually load rows.

    .venv/bin/python bench/fixtures_load.py                 # issue 3's figures (~8 min)
    .venv/bin/python bench/fixtures_load.py --quick         # a smoke run (~1 min; at its
                                                            # size start-up dominates)

Every approach writes the same generated rows into a fresh copy of a database migrated to
head (indexes and foreign keys in place), on one embedded PostgreSQL 18 started with its
default (durable) settings, or on ``DATABASE_URL``. Approaches take turns within each
round, so the machine's noise falls on all of them alike; the figures are medians.

* ``command``: ``scripts/load_fixtures.py`` as a subprocess, timed from start to exit:
  generation, load, verification and report, interpreter start-up included.
* ``plain COPY``: the same rows generated and encoded in memory beforehand (not timed),
  then one ``COPY`` per table and one commit on a single connection.
* ``execute_values``, ``Core insert``, ``ORM per row``: psycopg2's ``execute_values``,
  SQLAlchemy Core ``insert()`` batches, and one ORM ``add()`` per row with a commit per
  customer; slow, so they run on ``--small-customers`` and are compared in rows/s.
* ``command, 1% failing``: the command with a trigger that rejects every customer whose
  id ends in 37 (1 in 100), against the clean command in the same round; ``... late``:
  a trigger that rejects the transactions of one account in 250 instead (about 1% of
  customers), so each failure is found only after its customer and accounts went in.
* Failure cost: the command on ``--small-customers`` with a CHECK that rejects every
  message (every customer fails as late as it can), against a clean run of the same size
  in the same round, in seconds.
* No-op rerun: the command run again on the ``--customers`` it has just loaded.
* Clear: ``--clear`` of ``--memory-customers``, against the load of them (once).
* Peak memory (RSS) of the command at ``--customers``, at ``--memory-customers``, and at
  the largest ``--batch-size`` with the most ``--workers``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import io  # noqa: E402

import sqlalchemy as sa  # noqa: E402
from alembic import command  # noqa: E402
from psycopg2.extras import execute_values  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.support import bench_server  # noqa: E402
from seed_data import models  # noqa: E402
from seed_data.demo import cli  # noqa: E402
from seed_data.demo.generate import COLUMNS, TABLES, DemoGenerator  # noqa: E402
from seed_data.demo.load import copy_text  # noqa: E402
from seed_data.demo.reference import read_reference  # noqa: E402
from seed_data.demo.source import load_source_material  # noqa: E402
from tests.helpers import config_for  # noqa: E402

SEED = 42
FAIL_ONE_PERCENT = """
CREATE FUNCTION bench_reject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'bench: customer % rejected', NEW.customer_id; END $$;
CREATE TRIGGER bench_reject BEFORE INSERT ON customers
FOR EACH ROW WHEN (NEW.id % 100 = 37) EXECUTE FUNCTION bench_reject();
"""
# The same share failing where it costs most: in a customer's transactions, the largest
# table, after its customer and account rows went in. One account in 250 (about one
# customer in 100, at 2.5 accounts each).
FAIL_EVERY_MESSAGE = "ALTER TABLE messages ADD CONSTRAINT bench_reject CHECK (sequence_no < 0)"
FAIL_ONE_PERCENT_LATE = """
CREATE FUNCTION bench_reject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'bench: account % rejected', NEW.account_id; END $$;
CREATE TRIGGER bench_reject BEFORE INSERT ON transactions
FOR EACH ROW WHEN (NEW.account_id % 250 = 7) EXECUTE FUNCTION bench_reject();
"""
MODEL_FOR = {
    "customers": models.Customer,
    "accounts": models.Account,
    "transactions": models.Transaction,
    "conversations": models.Conversation,
    "messages": models.Message,
}


def generated_rows(engine: sa.Engine, customers: int) -> dict[str, list[tuple]]:
    """Every row the command would write, per table, held in memory."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            reference = read_reference(cursor)
    finally:
        raw.close()
    generator = DemoGenerator(SEED, load_source_material(), reference)
    rows: dict[str, list[tuple]] = {table: [] for table in TABLES}
    for customer in generator.customers(customers):
        for table, table_rows in zip(TABLES, customer.tables, strict=True):
            rows[table].extend(table_rows)
    return rows


def total(rows: dict[str, list[tuple]]) -> int:
    return sum(map(len, rows.values()))


def timed_on_one_connection(engine: sa.Engine, load: Callable[[Any], None]) -> float:
    """Seconds for ``load(cursor)`` and its commit, on one psycopg2 connection."""
    raw = engine.raw_connection()
    try:
        started = time.perf_counter()
        with raw.cursor() as cursor:
            load(cursor)
        raw.commit()
        return time.perf_counter() - started
    finally:
        raw.close()


def plain_copy(engine: sa.Engine, rows: dict[str, list[tuple]]) -> float:
    texts = {table: copy_text(table_rows) for table, table_rows in rows.items()}

    def load(cursor: Any) -> None:
        for table, text in texts.items():
            sql = f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN"
            cursor.copy_expert(sql, io.StringIO(text), size=1 << 20)

    return timed_on_one_connection(engine, load)


def with_execute_values(engine: sa.Engine, rows: dict[str, list[tuple]]) -> float:
    def load(cursor: Any) -> None:
        for table, table_rows in rows.items():
            sql = f"INSERT INTO {table} ({', '.join(COLUMNS[table])}) VALUES %s"
            execute_values(cursor, sql, table_rows, page_size=1000)

    return timed_on_one_connection(engine, load)


def with_core_insert(engine: sa.Engine, rows: dict[str, list[tuple]]) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        for table, table_rows in rows.items():
            target = models.Base.metadata.tables[table]
            for start in range(0, len(table_rows), 1000):
                chunk = table_rows[start : start + 1000]
                conn.execute(
                    target.insert(), [dict(zip(COLUMNS[table], r, strict=True)) for r in chunk]
                )
    return time.perf_counter() - started


def with_orm_per_row(engine: sa.Engine, rows: dict[str, list[tuple]]) -> float:
    """One add() per row, a commit per customer: the pattern the command replaces."""
    by_customer: dict[int, list[tuple[str, tuple]]] = {}
    owner = {"accounts": {}, "conversations": {}}
    for table in TABLES:
        for row in rows[table]:
            if table == "customers":
                customer = row[0]
            elif table in ("accounts", "conversations"):
                customer = row[2] if table == "accounts" else row[1]
                owner[table][row[0]] = customer
            elif table == "transactions":
                customer = owner["accounts"][row[1]]
            else:
                customer = owner["conversations"][row[1]]
            by_customer.setdefault(customer, []).append((table, row))
    started = time.perf_counter()
    with Session(engine) as session:
        for customer_rows in by_customer.values():
            for table, row in customer_rows:
                session.add(MODEL_FOR[table](**dict(zip(COLUMNS[table], row, strict=True))))
                session.flush()  # per-row INSERTs, in parent-first order
            session.commit()
    return time.perf_counter() - started


def run_command(url: sa.URL, customers: int | None, *extra: str) -> tuple[float, int, int, dict]:
    """(wall seconds, peak RSS bytes, exit status, JSON report) of the real command;
    ``customers`` None leaves out ``--customers`` (``--clear`` then only clears)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
        args = [sys.executable, str(REPO_ROOT / "scripts" / "load_fixtures.py")]
        args += ["--customers", str(customers)] if customers else []
        args += ["--seed", str(SEED), "-q", *extra, "--report-json", report.name]
        started = time.perf_counter()
        status = subprocess.run(args, env=env, stdout=subprocess.DEVNULL).returncode
        elapsed = time.perf_counter() - started
        document = json.loads(Path(report.name).read_text() or "{}")
    # From the command's own report: our rusage of a child forked from this big process
    # would count the pages it shared with us before exec.
    return elapsed, int(document.get("peak_rss_mib", 0) * 2**20), status, document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--small-customers", type=int, default=2_000)
    parser.add_argument("--orm-customers", type=int, default=1_000)
    parser.add_argument("--memory-customers", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run, no 200k")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.small_customers, args.orm_customers = 2_000, 500, 200
        args.memory_customers, args.runs = 0, 1
    console = Console(highlight=False, soft_wrap=True)

    with bench_server() as server:
        template = server.create_database()
        command.upgrade(config_for(server.engine(template.database)), "head")

        @contextmanager
        def fresh(prepare: str = "") -> Iterator[tuple[sa.Engine, sa.URL]]:
            url = server.create_database(template.database)
            engine = server.engine(url.database)
            if prepare:
                raw = engine.raw_connection()
                with raw.cursor() as cursor:
                    cursor.execute(prepare)  # no parameters: its % signs stay as written
                raw.commit()
                raw.close()
            try:
                yield engine, url
            finally:
                engine.dispose()
                server.drop_database(url.database)

        with fresh() as (engine, _):
            big = generated_rows(engine, args.customers)
            small = generated_rows(engine, args.small_customers)
            orm = generated_rows(engine, args.orm_customers)

        def in_memory(load: Callable, rows: dict) -> Callable[[], float]:
            def measure() -> float:
                with fresh() as (engine, _):
                    return total(rows) / load(engine, rows)

            return measure

        def the_command(prepare: str = "") -> Callable[[], float]:
            def measure() -> float:
                with fresh(prepare) as (_, url):
                    elapsed, rss, status, report = run_command(url, args.customers)
                    if not prepare:
                        seconds["no-op rerun"].append(run_command(url, args.customers)[0])
                peak_rss[prepare].append(rss)
                if status not in (0, 1):
                    raise SystemExit(f"the command failed with exit status {status}")
                return report["rows_written"] / elapsed

            return measure

        def timed(prepare: str = "") -> Callable[[], float]:
            def measure() -> float:
                with fresh(prepare) as (_, url):
                    elapsed, _, status, _ = run_command(url, args.small_customers)
                if status not in (0, 1):
                    raise SystemExit(f"the command failed with exit status {status}")
                return elapsed

            return measure

        seconds: dict[str, list[float]] = {"no-op rerun": []}
        timed_approaches = {
            "clean, small": timed(),
            "every customer failing late, small": timed(FAIL_EVERY_MESSAGE),
        }
        seconds.update({name: [] for name in timed_approaches})

        peak_rss: dict[str, list[int]] = {"": [], FAIL_ONE_PERCENT: [], FAIL_ONE_PERCENT_LATE: []}
        approaches = {
            "command": the_command(),
            "command, 1% failing": the_command(FAIL_ONE_PERCENT),
            "command, 1% failing late": the_command(FAIL_ONE_PERCENT_LATE),
            "plain COPY": in_memory(plain_copy, big),
            "execute_values": in_memory(with_execute_values, small),
            "Core insert": in_memory(with_core_insert, small),
            "ORM per row": in_memory(with_orm_per_row, orm),
        }
        samples: dict[str, list[float]] = {name: [] for name in approaches}
        for round_no in range(1, args.runs + 1):
            for name, measure in approaches.items():
                samples[name].append(measure())
                console.print(f"round {round_no}: {name}: {samples[name][-1]:,.0f} rows/s")
            for name, measure in timed_approaches.items():
                seconds[name].append(measure())
                console.print(f"round {round_no}: {name}: {seconds[name][-1]:.2f} s")

        memory = {f"{args.customers:,} customers": max(peak_rss[""])}
        with fresh() as (_, url):
            largest = ("--batch-size", str(cli.MAX_BATCH_SIZE), "--workers", str(cli.MAX_WORKERS))
            _, rss, _, _ = run_command(url, args.customers, *largest)
            memory[f"{args.customers:,} customers, {' '.join(largest)}"] = rss
        clearing: dict[str, float] = {}
        if args.memory_customers:
            with fresh() as (_, url):
                big_load = f"{args.memory_customers:,} customers"
                clearing["load"], memory[big_load], _, _ = run_command(url, args.memory_customers)
                clearing["clear"], _, status, report = run_command(url, None, "--clear")
                if status != 0 or report["cleared"]["customers"] != args.memory_customers:
                    raise SystemExit(f"--clear failed (exit status {status}): {report}")
        server.drop_database(template.database)

    median = {name: statistics.median(values) for name, values in samples.items()}
    table = Table(title=f"rows/s, median of {args.runs} run(s)")
    table.add_column("approach")
    table.add_column("rows", justify="right")
    table.add_column("rows/s", justify="right")
    sizes = {
        "command": args.customers,
        "command, 1% failing": args.customers,
        "command, 1% failing late": args.customers,
        "plain COPY": args.customers,
        "execute_values": args.small_customers,
        "Core insert": args.small_customers,
        "ORM per row": args.orm_customers,
    }
    for name, value in median.items():
        table.add_row(name, f"{sizes[name]:,} customers", f"{value:,.0f}")
    console.print(table)

    command_rate = median["command"]
    checks = [
        ("command / plain COPY", command_rate / median["plain COPY"], ">= 0.9"),
        ("command / ORM per row", command_rate / median["ORM per row"], ">= 15"),
        ("command / execute_values", command_rate / median["execute_values"], ">= 2"),
        ("command / Core insert", command_rate / median["Core insert"], "(info)"),
        ("1% failing / clean command", median["command, 1% failing"] / command_rate, ">= 0.7"),
        ("1% failing late / clean", median["command, 1% failing late"] / command_rate, ">= 0.8"),
    ]
    for label, ratio, target in checks:
        console.print(f"{label:<28} {ratio:6.2f}x   target {target}")
    timing = {name: statistics.median(values) for name, values in seconds.items()}
    failing_late = timing["every customer failing late, small"] / timing["clean, small"]
    console.print(
        f"{'every customer failing late':<28} {failing_late:6.2f}x the time of a clean run "
        f"of {args.small_customers:,} ({timing['every customer failing late, small']:.1f} s vs "
        f"{timing['clean, small']:.1f} s)   target <= 5"
    )
    console.print(
        f"{'no-op rerun':<28} {timing['no-op rerun']:6.2f} s at {args.customers:,} customers"
        "   target < 3"
    )
    if clearing:
        console.print(
            f"{'--clear / load':<28} {clearing['clear'] / clearing['load']:6.2f}x "
            f"({clearing['clear']:.1f} s vs {clearing['load']:.1f} s at "
            f"{args.memory_customers:,} customers)   target <= 0.5"
        )
    mib = {name: rss / 2**20 for name, rss in memory.items()}
    for name, value in mib.items():
        console.print(f"peak RSS at {name}: {value:.1f} MiB (target < 150)")
    if args.memory_customers:
        low = mib[f"{args.customers:,} customers"]
        high = mib[f"{args.memory_customers:,} customers"]
        console.print(
            f"RSS growth {args.customers:,} -> {args.memory_customers:,}: "
            f"{(high / low - 1):+.1%} (target within 10%)"
        )


if __name__ == "__main__":
    main()
