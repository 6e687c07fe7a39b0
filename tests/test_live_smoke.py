"""The live-migration harness in small, over every revision (CI): each upgrade runs while
the app reads and writes the tables it touches, and no app query may wait longer than the
migration's own budget (``app_wait_max``) plus a little.

Small tables make every statement fast, so a lock held for as long as a whole table takes
would go unseen. Here a trigger on every business table makes each row a migration's
statement changes cost 1 ms (only for the migration's sessions: they carry a setting the
app's do not): a statement changing every row of a few thousand holds its locks for
seconds, as it would at production size, while a batch of twenty conversations' rows
holds them for a few hundredths of one. The revisions run with ``-x batch_size=20``: far
below the budget even when a busy machine makes each 1 ms sleep several.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.util import CommandError

from seed_data.lock_discipline import LockSettings
from seed_data.models import BUSINESS_TABLES
from tests.demo_support import Loader
from tests.helpers import ALEMBIC_INI, Step, revision_steps, steps_to_cover
from tests.live_traffic import Latency, Traffic, operations_for, touched_tables
from tests.migrator import Migrator
from tests.refdata_support import Workspace
from tests.revision_samples import FILL_IN_THE_SAME_TRANSACTION, UNDO_FILL
from tests.servers import PgServer

CUSTOMERS = "60"  # about 2,200 transactions: a whole-table UPDATE holds its lock 2 s here
ROW_DELAY = "0.001"
BATCH_SIZE = 20
BUDGET = LockSettings().app_wait_max / 1000
SLACK = 0.5
ROW_DELAY_TRIGGER = """
CREATE OR REPLACE FUNCTION smoke_row_delay() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Set only in the migration's sessions; NULL elsewhere, and pg_sleep(NULL) returns.
    PERFORM pg_sleep(current_setting('smoke.row_delay', true)::float8);
    RETURN coalesce(NEW, OLD);
END $$;
CREATE OR REPLACE TRIGGER smoke_row_delay BEFORE INSERT OR UPDATE OR DELETE ON "{table}"
FOR EACH ROW EXECUTE FUNCTION smoke_row_delay();
"""


@dataclass
class Walk:
    """What the walk saw: the longest app wait per step, and what went wrong."""

    waits: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    loaded_at: str | None = None


def business_rows(engine: sa.Engine) -> dict[str, list[dict]]:
    with engine.connect() as conn:
        return {
            table: [dict(row._mapping) for row in conn.execute(sa.text(f"SELECT * FROM {table}"))]
            for table in BUSINESS_TABLES
        }


def load_where_possible(engine: sa.Engine, rows: dict[str, list[dict]]) -> bool:
    """Copy the demo rows in, with the columns the tables have at this revision; False
    (and nothing written) while a table, a column they need or a reference row is missing."""
    try:
        with engine.begin() as conn:
            inspector = sa.inspect(conn)
            for table, table_rows in rows.items():
                if not inspector.has_table(table):
                    raise LookupError(table)
                columns = {c["name"]: c for c in inspector.get_columns(table)}
                given = [c for c in table_rows[0] if c in columns]
                required = [
                    name
                    for name, c in columns.items()
                    if not c["nullable"] and c["default"] is None and not c.get("identity")
                ]
                if set(required) - set(given):
                    raise LookupError(table)
                target = sa.table(table, *(sa.column(c) for c in given))
                conn.execute(target.insert(), [{c: row[c] for c in given} for row in table_rows])
    except (LookupError, sa.exc.IntegrityError):
        return False
    return True


def add_row_delays(engine: sa.Engine, done: set[str]) -> None:
    """The delay trigger on every business table that exists now and has none yet."""
    with engine.begin() as conn:
        present = set(sa.inspect(conn).get_table_names())
        for table in sorted(present & set(BUSINESS_TABLES) - done):
            conn.execute(sa.text(ROW_DELAY_TRIGGER.format(table=table)))
            done.add(table)


def walk_under_traffic(
    pg_server: PgServer,
    rows: dict[str, list[dict]],
    ini: Path = ALEMBIC_INI,
    since: tuple[str, str] | None = None,
) -> Walk:
    """Every revision of ``ini``'s history, upgraded one at a time on a new database while
    the app uses the tables it touches; demo rows go in as soon as the tables take them.
    ``since`` (a revision, and a template database at it): only the revisions after it,
    on a copy of the template."""
    walk = Walk()
    offline = Migrator(ini=ini)
    steps = revision_steps() if ini == ALEMBIC_INI else steps_of(offline)
    start, template = since if since is not None else ("base", None)
    if since is not None:
        steps = steps[[step.revision for step in steps].index(start) + 1 :]
    # What each step's SQL names, from one --sql run over the whole walk.
    sql_of = split_by_step(offline.sql("upgrade", start, steps[-1].revision))
    with pg_server.database(template=template) as engine:
        migrating = sa.create_engine(
            engine.url, pool_size=2, connect_args={"options": f"-c smoke.row_delay={ROW_DELAY}"}
        )
        migrator = Migrator(migrating, ini=ini, batch_size=BATCH_SIZE)
        delayed: set[str] = set()
        with (
            Traffic(engine, workers=3, interval=0.02) as traffic,
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as reader,
        ):
            for step in steps:
                if walk.loaded_at is None and load_where_possible(engine, rows):
                    walk.loaded_at = step.down_revision
                    traffic.sample()
                sql = sql_of[step.revision]
                if not delayed or re.search(r"\bCREATE\s+TABLE\b", sql, re.IGNORECASE):
                    add_row_delays(engine, delayed)
                touched = touched_tables(sql, reader)
                # Reference tables are small (and the lint gate exempts them); a revision
                # touching only those (a data change) runs without traffic.
                busy = set(touched) & set(BUSINESS_TABLES)
                traffic.use(operations_for(reader, touched) if busy else [])
                started = time.monotonic()
                try:
                    migrator.upgrade(step.revision)
                except CommandError as error:
                    walk.problems.append(str(error))
                ended = time.monotonic()
                if busy:
                    time.sleep(0.05)  # for operations still waiting to finish
                    traffic.use([])
                    time.sleep(0.05)
                ops = traffic.between(started, ended)
                latency = Latency.of(ops)
                walk.waits[step.file_stem] = latency.max / 1000
                for op in ops:
                    if op.error:
                        walk.problems.append(f"{step.file_stem}: app {op.kind} failed: {op.error}")
                if walk.problems:
                    break
        migrating.dispose()
    return walk


STEP_MARK = re.compile(r"^-- Running upgrade (?P<down>\S*) -> (?P<up>\S+)$", re.MULTILINE)


def split_by_step(sql: str) -> dict[str, str]:
    """A whole history's --sql text, cut at alembic's "-- Running upgrade A -> B" marks:
    each revision's part (give or take the statements between two steps, which name no
    table)."""
    marks = list(STEP_MARK.finditer(sql))
    ends = [mark.start() for mark in marks[1:]] + [len(sql)]
    return {mark["up"]: sql[mark.start() : end] for mark, end in zip(marks, ends, strict=True)}


def steps_of(migrator: Migrator) -> list[Step]:
    scripts = list(migrator.script.walk_revisions("base", "heads"))[::-1]
    return [Step(s.revision, s.down_revision or "base", Path(s.path).stem) for s in scripts]  # type: ignore[arg-type]


@pytest.fixture
def demo_rows(
    pg_server: PgServer, head_template: str, load_fixtures: Loader
) -> dict[str, list[dict]]:
    with pg_server.database(template=head_template) as source:
        result = load_fixtures(source, "--customers", CUSTOMERS, "-q")
        assert result.code == 0, result.err
        return business_rows(source)


@pytest.mark.history
@pytest.mark.slow
def test_every_revision_upgrades_under_app_traffic_within_the_app_wait_budget(
    pg_server: PgServer, demo_rows: dict[str, list[dict]]
) -> None:
    start = steps_to_cover(revision_steps())[0].down_revision
    if start == "base":
        walk = walk_under_traffic(pg_server, demo_rows)
    else:  # the drill's copy: the revisions it added, from where they start
        with pg_server.database() as at_start:
            Migrator(at_start).upgrade(start)
            at_start.dispose()
            walk = walk_under_traffic(pg_server, demo_rows, since=(start, at_start.url.database))

    assert walk.problems == [], "\n".join(walk.problems)
    assert walk.loaded_at is not None, "the demo rows never fitted the tables"
    slow = {stem: round(wait, 2) for stem, wait in walk.waits.items() if wait > BUDGET + SLACK}
    assert not slow, f"app queries waited longer than {BUDGET + SLACK} s during {slow}"


@pytest.mark.slow
def test_the_smoke_run_stops_a_column_filled_under_the_alter_s_lock(
    pg_server: PgServer,
    demo_rows: dict[str, list[dict]],
    workspace: Workspace,
    head_template: str,
) -> None:
    """The unsafe revision fails CI here, before it reaches a database: its step is
    stopped within the budget with the hold's line, and the app never waits longer.
    (The walk starts at this repository's head: the revisions before it are the other
    smoke test's.)"""
    workspace.add_revision("amount in pence", FILL_IN_THE_SAME_TRANSACTION, UNDO_FILL)

    head = revision_steps()[-1].revision
    walk = walk_under_traffic(pg_server, demo_rows, workspace.ini, since=(head, head_template))

    [problem] = walk.problems
    assert "stopped: an app query waited" in problem and "on transactions" in problem, problem
    assert "UPDATE transactions SET amount_pence" in problem, problem
    worst = max(walk.waits.values())
    assert worst <= BUDGET + SLACK, f"the app waited {worst:.2f} s"
