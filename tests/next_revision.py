"""The team's next revision, of each kind the docs describe, written into a copy of this
checkout the way a developer following the docs would write it.

* a data change: edit ``seed_data/reference/products.yaml``, ``refdata.py revision -m``;
* a new reference table: its model, a schema revision creating it, its declared file, and
  the data revision ``refdata.py revision`` generates for its rows;
* a schema change that fills a column (docs/schema-revisions.md): a nullable column, then
  a backfill in batches outside the ALTER's transaction, resumable, with its ``--sql``
  form; the model follows.

The drill (tests/test_next_revision_drill.py) adds one of each and runs the tests that
cover every revision there; ``bench/ci_cost.py`` adds many data revisions and measures what
each costs the test command.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from seed_data.db import REPO_ROOT
from tests.helpers import ALEMBIC_BIN

PYTEST_BIN = Path(sys.executable).with_name("pytest")
# Compiled files (__pycache__) come along: they stay valid for the copied sources (copies
# keep their modification times), and compiling every revision file again in every copy
# would be a cost that grows with the history.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".pgdata", ".pytest_cache", ".ruff_cache", "*.egg-info", "build"
)
# The declared value the data revisions change: one no test takes as its input (the
# toolkit's tests edit today's declared files, e.g. the tracker rate; see the README).
ISA_RATE = re.compile(r"(- code: easy_access_cash_isa\n(?:  .*\n)*?  interest_rate: )(\d+\.\d\d)")

NEW_TABLE = "drill_card_networks"
NEW_MODEL = '''

class DrillCardNetworkRow(LookupMixin, Base):
    """The card scheme a card is issued on (the drill's; a name the project will not use)."""

    __tablename__ = "drill_card_networks"
'''
NEW_TABLE_FILE = """# Card networks: the scheme a card is issued on.
#
# Declared reference data: the rows of `drill_card_networks` the app expects at head.

- {code: visa, label: Visa, sort_order: 10}
- {code: mastercard, label: Mastercard, sort_order: 20}
"""
REVISION_HEADER = '''"""{message}

Revision ID: {revision}
Revises: {down_revision}
Create Date: 2027-01-04 09:00:00.000000
"""

'''
CREATE_TABLE_BODY = '''from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "{revision}"
down_revision: str | Sequence[str] | None = "{down_revision}"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply card networks table."""
    op.create_table(
        "drill_card_networks",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_drill_card_networks")),
    )


def downgrade() -> None:
    """Unapply card networks table."""
    op.drop_table("drill_card_networks")
'''
CREATE_TABLE_ALLOWANCES = """
[{revision}.upgrade]
prefer-text-field = "A new lookup table, created empty; every lookup has these lengths (LookupMixin)."
prefer-bigint-over-int = "sort_order is a small display order, as in every lookup (LookupMixin)."

[{revision}.downgrade]
ban-drop-table = "Drops drill_card_networks, which this revision's upgrade created; the release that reads it is rolled back first."
"""
FILL_COLUMN_BODY = '''import contextlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "{revision}"
down_revision: str | Sequence[str] | None = "{down_revision}"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One batch: the next customers by id, filled unless done already; the last id, or NULL.
NEXT_BATCH = """
WITH batch AS (
    SELECT id FROM customers WHERE id > :after ORDER BY id LIMIT :batch_size
), filled AS (
    UPDATE customers AS c SET drill_display_name = c.first_name
    FROM batch WHERE c.id = batch.id AND c.drill_display_name IS NULL
)
SELECT max(id) FROM batch
"""
# Offline, psql runs the same batches, a COMMIT after each.
BACKFILL_SCRIPT = """
DO $$
DECLARE
    after_id bigint := 0;
BEGIN
    LOOP
        WITH batch AS (
            SELECT id FROM customers WHERE id > after_id ORDER BY id LIMIT {{batch_size}}
        ), filled AS (
            UPDATE customers AS c SET drill_display_name = c.first_name
            FROM batch WHERE c.id = batch.id AND c.drill_display_name IS NULL
        )
        SELECT max(id) INTO after_id FROM batch;
        EXIT WHEN after_id IS NULL;
        COMMIT;
    END LOOP;
END
$$
"""


@contextlib.contextmanager
def outside_transaction() -> Iterator[None]:
    """Each statement commits on its own; not in a caller's transaction."""
    if context.is_offline_mode() or op.get_context().opts.get("autocommit_allowed"):
        with op.get_context().autocommit_block():
            yield
    else:
        yield


def backfill() -> None:
    """Fill drill_display_name, a batch of customers per transaction."""
    batch_size = int(op.get_context().opts.get("batch_size", 1000))
    if context.is_offline_mode():
        op.execute("SET statement_timeout = '0'")
        op.execute(BACKFILL_SCRIPT.format(batch_size=batch_size))
        op.execute(f"SET statement_timeout = '{{op.get_context().opts['statement_timeout']}}'")
        return
    bind = op.get_bind()
    after = 0
    while after is not None:
        after = bind.scalar(sa.text(NEXT_BATCH), {{"after": after, "batch_size": batch_size}})


def upgrade() -> None:
    """Apply customer display names."""
    op.add_column(
        "customers", sa.Column("drill_display_name", sa.Text(), nullable=True), if_not_exists=True
    )
    with outside_transaction():
        backfill()


def downgrade() -> None:
    """Unapply customer display names."""
    op.drop_column("customers", "drill_display_name", if_exists=True)
'''
FILL_COLUMN_ALLOWANCES = """
[{revision}.downgrade]
ban-drop-column = "Drops drill_display_name, which this revision's upgrade added; the app is rolled back to the release that never reads it first."
"""
NEW_COLUMN = "    drill_display_name: Mapped[str | None] = mapped_column(Text)\n"


def declare_reference_table(models: str) -> str:
    """``seed_data/models.py`` with the new table's model, declared reference data.

    The model is a ``LookupMixin``, which marks it ``ReferenceData``: that is all
    the docs ask of a new reference table. It goes before the line that derives
    ``REFERENCE_TABLES``, so the tuple sees it.
    """
    marker = "# Every model marked ReferenceData"
    assert marker in models, (
        f"seed_data/models.py no longer has the line {marker!r}; "
        "update tests/next_revision.py to add a model where the docs now say"
    )
    return models.replace(marker, NEW_MODEL.lstrip("\n") + "\n\n" + marker, 1)


@dataclass
class Checkout:
    """A copy of this checkout; ``scratch_url`` is a server ``refdata.py`` may use."""

    root: Path
    scratch_url: str

    @classmethod
    def copy(cls, destination: Path, scratch_url: str, source: Path = REPO_ROOT) -> Checkout:
        shutil.copytree(source, destination, ignore=NOT_COPIED)
        return cls(destination, scratch_url)

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        return subprocess.run(
            list(args),
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def must(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, (
            f"{' '.join(args)} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
        return result.stdout

    def refdata(self, *args: str) -> str:
        script = str(self.root / "scripts" / "refdata.py")
        return self.must(sys.executable, script, "--scratch-url", self.scratch_url, *args)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def add_data_revision(self, number: int) -> None:
        """The Cash ISA's rate changes: a declared file edited, its revision generated."""
        products = self.path("seed_data/reference/products.yaml")
        text = products.read_text(encoding="utf-8")
        rate = f"{3 + number % 150 / 100:.2f}"  # never the rate before it
        assert ISA_RATE.search(text), "the Cash ISA's rate is no longer where it was"
        products.write_text(ISA_RATE.sub(rf"\g<1>{rate}", text, count=1), encoding="utf-8")
        self.refdata("revision", "-m", f"Cash ISA rate {rate}")

    def add_reference_table(self) -> None:
        """A new lookup: model, schema revision, declared file, generated data revision."""
        models = self.path("seed_data/models.py")
        models.write_text(declare_reference_table(models.read_text("utf-8")), encoding="utf-8")
        self.hand_written_revision(
            "card networks table", CREATE_TABLE_BODY, CREATE_TABLE_ALLOWANCES
        )
        self.path(f"seed_data/reference/{NEW_TABLE}.yaml").write_text(NEW_TABLE_FILE, "utf-8")
        self.refdata("revision", "-m", "card networks")

    def add_schema_revision(self) -> None:
        """A column filled the way docs/schema-revisions.md says, and the model with it."""
        self.hand_written_revision(
            "customer display names", FILL_COLUMN_BODY, FILL_COLUMN_ALLOWANCES
        )
        models = self.path("seed_data/models.py")
        text = models.read_text(encoding="utf-8")
        anchor = "    is_vip: Mapped[bool] = mapped_column(server_default=false())\n"
        assert anchor in text, "Customer's model is no longer as it was"
        models.write_text(text.replace(anchor, anchor + NEW_COLUMN, 1), encoding="utf-8")

    def hand_written_revision(self, message: str, body: str, allowances: str) -> Path:
        """``alembic revision -m``, its steps written, the lint findings it accepts with
        their reasons, then ``refdata.py lock``."""
        self.must(str(ALEMBIC_BIN), "revision", "-m", message)
        script = ScriptDirectory.from_config(Config(str(self.path("alembic.ini"))))
        head = script.get_revision("head")
        assert head is not None and head.path is not None
        names = {"message": message, "revision": head.revision, "down_revision": head.down_revision}
        Path(head.path).write_text(
            REVISION_HEADER.format(**names) + body.format(**names), encoding="utf-8"
        )
        ruff = [sys.executable, "-m", "ruff"]
        self.must(*ruff, "format", head.path)
        self.must(*ruff, "check", "--fix", head.path)
        with self.path("alembic/squawk_allowances.toml").open("a", encoding="utf-8") as file:
            file.write(allowances.format(**names))
        self.refdata("lock")
        return Path(head.path)

    def pytest(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PYTEST_BIN), "-p", "no:cacheprovider", *args],
            cwd=self.root,
            env={**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, **(env or {})},
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
