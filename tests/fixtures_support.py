"""What the fixtures-loader tests share: running the command, and checking what it left."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from seed_data.db import REPO_ROOT
from seed_data.demo import cli
from seed_data.demo.generate import TABLES
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
        for name in cli.ENVIRONMENT_VARIABLES:
            monkeypatch.delenv(name, raising=False)

    def __call__(self, target: sa.Engine | str, *args: str) -> Result:
        url = target if isinstance(target, str) else target.url.render_as_string(False)
        self.monkeypatch.setenv("DATABASE_URL", url)
        report = self.tmp / "report.json"
        report.unlink(missing_ok=True)
        self.capsys.readouterr()
        code = cli.main([*args, "--report-json", str(report)])
        out, err = self.capsys.readouterr()
        document = json.loads(report.read_text()) if report.exists() else None
        return Result(code, out, err, document)


def run_script(url: sa.URL, *args: str, **popen: object) -> subprocess.Popen[str]:
    """The command as an operator runs it: a separate process."""
    return subprocess.Popen(
        [sys.executable, str(LOAD_FIXTURES), *args],
        cwd=REPO_ROOT,
        env={k: v for k, v in alembic_env(url).items() if k not in cli.ENVIRONMENT_VARIABLES},
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
