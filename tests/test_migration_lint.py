"""The lint gate: nothing in any revision's SQL that is not explicitly allowed.

Every revision's upgrade (``alembic upgrade A:B --sql``) and downgrade (``downgrade B:A
--sql``) is linted with squawk, for the oldest PostgreSQL we support, and with the
project's own rules (``seed_data/migration_lint.py``): rows of a business table changed in
a transaction that holds a table lock, and a ``drop_constraint`` the naming convention
silently misdirects. A finding passes only if ``alembic/squawk_allowances.toml`` lists
its revision, direction and rule with a reason, so a future revision that rewrites a
table, waits on a lock without a timeout, builds an index without CONCURRENTLY or fills a
column under the lock its ALTER took fails CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from seed_data.db import REPO_ROOT
from seed_data.migration_lint import (
    LOCK_THEN_WRITE,
    Finding,
    lock_then_write,
    revision_source_findings,
    without_copy_rows,
)
from tests.helpers import Step, revision_steps, steps_to_cover
from tests.migrator import Migrator

pytestmark = pytest.mark.history
ALLOWANCES_FILE = REPO_ROOT / "alembic" / "squawk_allowances.toml"
SQUAWK = Path(sys.executable).with_name("squawk")
# The oldest server the tests run on: rules that depend on the version judge for it.
PG_VERSION = "15"
STEPS = revision_steps()
COVERED = steps_to_cover(STEPS)
DIRECTIONS = ("upgrade", "downgrade")

# The message sequence-number revision as it was first written: ADD COLUMN, a full-table
# UPDATE, SET NOT NULL, ADD UNIQUE and DROP INDEX in one transaction holding ACCESS
# EXCLUSIVE, without timeouts. The gate must stop anything like it.
UNSAFE_REVISION_SQL = """
BEGIN;
ALTER TABLE messages ADD COLUMN sequence_no INTEGER;
UPDATE messages SET sequence_no = numbered.sequence_no
FROM (SELECT id, row_number() OVER (PARTITION BY conversation_id ORDER BY sent_at, id)
      AS sequence_no FROM messages) AS numbered
WHERE messages.id = numbered.id;
ALTER TABLE messages ALTER COLUMN sequence_no SET NOT NULL;
ALTER TABLE messages ADD CONSTRAINT uq_messages_conversation_id_sequence_no
    UNIQUE (conversation_id, sequence_no);
DROP INDEX ix_messages_conversation_id;
COMMIT;
"""


def squawk(scripts: dict[str, str], folder: Path) -> dict[str, list[Finding]]:
    """squawk's findings in each script (name -> SQL), from one run over all of them."""
    paths = {}
    for name, sql in scripts.items():
        paths[name] = folder / f"{name}.sql"
        # squawk parses everything as SQL, the rows a COPY reads from the script included.
        paths[name].write_text(without_copy_rows(sql), encoding="utf-8")
    result = subprocess.run(
        [
            str(SQUAWK),
            f"--pg-version={PG_VERSION}",
            "--reporter",
            "json",
            *map(str, paths.values()),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # squawk exits 1 when it finds something; anything else is squawk failing.
    assert result.returncode in (0, 1) and result.stdout.strip(), (
        f"squawk failed (exit {result.returncode}); is squawk-cli installed (pip install -e"
        f" '.[dev]')?\n{result.stderr}"
    )
    by_path: dict[str, list[Finding]] = {str(path): [] for path in paths.values()}
    for f in json.loads(result.stdout):
        by_path[f["file"]].append(Finding(f["rule_name"], f["line"] + 1, f["message"]))
    return {name: by_path[str(path)] for name, path in paths.items()}


def allowances() -> dict[str, dict[str, dict[str, str]]]:
    with ALLOWANCES_FILE.open("rb") as file:
        return tomllib.load(file)


def span(step: Step, direction: str) -> tuple[str, str]:
    if direction == "upgrade":
        return step.down_revision, step.revision
    return step.revision, step.down_revision


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Finding]]:
    """Every revision's upgrade and downgrade SQL (what ``alembic upgrade A:B --sql`` and
    ``downgrade B:A --sql`` write), linted by squawk in one run and by the project's own
    rules; keyed ``<revision>.<direction>``. One process writes all the SQL, so the cost
    per revision is that revision's own."""
    migrator = Migrator()
    scripts = {
        f"{step.revision}.{direction}": migrator.sql(direction, *span(step, direction))
        for step in COVERED
        for direction in DIRECTIONS
    }
    return gate(scripts, tmp_path_factory.mktemp("squawk"))


def gate(scripts: dict[str, str], folder: Path) -> dict[str, list[Finding]]:
    """The gate's findings in each script: squawk's and the project's own rules'."""
    found = squawk(scripts, folder)
    return {name: found[name] + lock_then_write(sql) for name, sql in scripts.items()}


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("step", COVERED, ids=[s.file_stem for s in COVERED])
def test_revision_sql_has_only_allowed_findings(
    step: Step, direction: str, findings: dict[str, list[Finding]]
) -> None:
    found = findings[f"{step.revision}.{direction}"]
    allowed = allowances().get(step.revision, {}).get(direction, {})
    unallowed = [f for f in found if f.rule not in allowed]
    assert not unallowed, (
        f"the lint gate finds problems in the {direction} of {step.file_stem}:\n"
        + "\n".join(f"  {f}" for f in unallowed)
        + "\nMake the step lock-safe (docs/schema-revisions.md shows how), or, if it is safe"
        f" for a reason the gate cannot see, add it to {ALLOWANCES_FILE.name} under"
        f" [{step.revision}.{direction}] with that reason."
    )
    unused = sorted(set(allowed) - {f.rule for f in found})
    assert not unused, (
        f"{ALLOWANCES_FILE.name} allows {unused} for the {direction} of {step.file_stem}, but"
        " the gate no longer reports them: remove those entries."
    )


@pytest.mark.parametrize("step", COVERED, ids=[s.file_stem for s in COVERED])
def test_revision_source_has_no_silent_drop_constraint(step: Step) -> None:
    found = revision_source_findings(REPO_ROOT / "alembic" / "versions" / f"{step.file_stem}.py")
    assert not found, f"{step.file_stem}.py:\n" + "\n".join(f"  {f}" for f in found)


def test_every_allowance_names_a_revision_direction_and_reason() -> None:
    revisions = {step.revision for step in STEPS}
    for revision, directions in allowances().items():
        assert revision in revisions, f"{ALLOWANCES_FILE.name}: no revision {revision!r}"
        assert set(directions) <= set(DIRECTIONS), (
            f"{ALLOWANCES_FILE.name}: [{revision}] sections must be upgrade or downgrade"
        )
        for direction, rules in directions.items():
            for rule, reason in rules.items():
                assert isinstance(reason, str) and len(reason.split()) >= 5, (
                    f"{ALLOWANCES_FILE.name}: [{revision}.{direction}] {rule} needs a reason"
                    " that says why it is safe here"
                )


def test_the_gate_stops_the_original_unsafe_revision(tmp_path: Path) -> None:
    rules = {f.rule for f in gate({"unsafe": UNSAFE_REVISION_SQL}, tmp_path)["unsafe"]}
    assert {
        "require-lock-timeout",
        "require-statement-timeout",
        "adding-not-nullable-field",
        "disallowed-unique-constraint",
        "require-concurrent-index-deletion",
        LOCK_THEN_WRITE,
    } <= rules, f"the gate no longer reports what made the first version unsafe: {rules}"
