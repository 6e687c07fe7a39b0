"""What the fixtures-loader tests share: running the command, and checking what it left."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from seed_data.db import REPO_ROOT
from seed_data.demo import cli
from seed_data.demo.generate import TABLES
from seed_data.environment import ENVIRONMENT_VARIABLES
from tests.helpers import alembic_env, snapshot_rows

LOAD_FIXTURES = REPO_ROOT / "scripts" / "load_fixtures.py"

# Demo customers that did not land whole: a wrong number of accounts, an account without
# 10-20 transactions, or a conversation without its two messages.
PARTIAL_CUSTOMERS = """
SELECT c.customer_id FROM customers AS c
WHERE c.customer_id LIKE 'DEMO-%' AND (
    (SELECT count(*) FROM accounts AS a WHERE a.customer_id = c.id)
        <> CASE WHEN c.id % 2 = 1 THEN 2 ELSE 3 END
    OR EXISTS (
        SELECT 1 FROM accounts AS a WHERE a.customer_id = c.id
        AND (SELECT count(*) FROM transactions AS t WHERE t.account_id = a.id) NOT BETWEEN 10 AND 20
    )
    OR (SELECT count(*) FROM conversations AS v WHERE v.customer_id = c.id) <> 1
    OR (SELECT count(*) FROM messages AS m JOIN conversations AS v ON v.id = m.conversation_id
        WHERE v.customer_id = c.id) <> 2
)
ORDER BY 1
"""


@dataclass
class Result:
    code: int
    out: str
    err: str
    report: dict | None


class Loader:
    """Runs the real command in-process, against one test database at a time."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp: Path
    ):
        self.monkeypatch, self.capsys, self.tmp = monkeypatch, capsys, tmp
        for name in ENVIRONMENT_VARIABLES:
            monkeypatch.delenv(name, raising=False)

    def __call__(self, target: sa.Engine | str, *args: str) -> Result:
        url = target if isinstance(target, str) else target.url.render_as_string(False)
        self.monkeypatch.setenv("DATABASE_URL", url)
        report = self.tmp / "report.json"
        report.unlink(missing_ok=True)
        self.capsys.readouterr()
        own_report = [] if "--report-json" in args else ["--report-json", str(report)]
        code = cli.main([*args, *own_report])
        out, err = self.capsys.readouterr()
        document = json.loads(report.read_text()) if report.exists() else None
        return Result(code, out, err, document)


def run_script(
    url: sa.URL, *args: str, python: tuple[str, ...] = (), **popen: object
) -> subprocess.Popen[str]:
    """The command as an operator runs it: a separate process (``python``: options for
    the interpreter)."""
    return subprocess.Popen(
        [sys.executable, *python, str(LOAD_FIXTURES), *args],
        cwd=REPO_ROOT,
        env={k: v for k, v in alembic_env(url).items() if k not in ENVIRONMENT_VARIABLES},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def business_rows(conn: sa.Connection) -> dict[str, list[str]]:
    rows = snapshot_rows(conn)
    return {table: rows[table] for table in TABLES}


def table_counts(conn: sa.Connection) -> dict[str, int]:
    return {table: conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) for table in TABLES}


def partial_customers(conn: sa.Connection) -> list[str]:
    return list(conn.scalars(sa.text(PARTIAL_CUSTOMERS)))


def install(engine: sa.Engine, ddl: str) -> None:
    """Run DDL with ``%`` signs as written (a trigger's RAISE format, say)."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute(ddl)
        raw.commit()
    finally:
        raw.close()


REJECT = """
CREATE FUNCTION reject_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'rejected by test trigger (table %)', TG_TABLE_NAME; END $$;
"""
# Every customer fails as late as possible: at its messages, after everything else went in.
REJECT_EVERY_MESSAGE = "ALTER TABLE messages ADD CONSTRAINT reject_all CHECK (sequence_no < 0)"


def row_trigger(name: str, table: str, body: str, *, when: str = "") -> str:
    """DDL for a BEFORE INSERT row trigger ``name`` on ``table`` running PL/pgSQL ``body``."""
    condition = f"WHEN ({when}) " if when else ""
    return f"""
    CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$;
    CREATE TRIGGER {name} BEFORE INSERT ON {table}
    FOR EACH ROW {condition}EXECUTE FUNCTION {name}();
    """


def slow_inserts(seconds: float, table: str = "customers") -> str:
    """A trigger that makes each row take ``seconds``: a load stays mid-flight."""
    return row_trigger(f"slow_{table}", table, f"PERFORM pg_sleep({seconds}); RETURN NEW;")


def other_sessions(engine: sa.Engine, *, settle_seconds: float = 5.0) -> list[tuple]:
    """Sessions on the database other than ours, once they had a moment to go away.

    A client that exits leaves its backend to notice and end; poll rather than sleep.
    """
    deadline = time.monotonic() + settle_seconds
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT pid, state, application_name FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )
            ).all()
        if not rows or time.monotonic() > deadline:
            return [tuple(row) for row in rows]
        time.sleep(0.05)


def wait_for_customers(engine: sa.Engine, at_least: int, process: subprocess.Popen) -> int:
    """Customers in the database once there are ``at_least``, while ``process`` runs."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with engine.connect() as conn:
            landed = conn.scalar(sa.text("SELECT count(*) FROM customers"))
        if landed >= at_least:
            return landed
        time.sleep(0.02)
    out, err = process.communicate() if process.poll() is not None else ("", "")
    pytest.fail(f"the load ended or stalled before {at_least} customers landed: {out}{err}")


def wait_for_output(process: subprocess.Popen, text: str, timeout: float = 30) -> str:
    """Lines of ``process``'s stdout up to the first containing ``text``."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:  # the command ended: say how
            seen.append(f"[exit status {process.wait()}] {process.stderr.read()}")
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    pytest.fail(f"{text!r} never appeared; the command said: {''.join(seen)}")
