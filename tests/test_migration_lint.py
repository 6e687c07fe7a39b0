"""The lint gate: squawk finds nothing in any revision's SQL that is not explicitly allowed.

Every revision's upgrade (``alembic upgrade A:B --sql``) and downgrade (``downgrade B:A
--sql``) is linted with squawk, for the oldest PostgreSQL we support. A finding passes only
if ``alembic/squawk_allowances.toml`` lists its revision, direction and rule with a reason,
so a future revision that rewrites a table, waits on a lock without a timeout or builds an
index without CONCURRENTLY fails CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from seed_data.db import REPO_ROOT
from tests.helpers import Step, revision_steps, run_alembic

ALLOWANCES_FILE = REPO_ROOT / "alembic" / "squawk_allowances.toml"
SQUAWK = Path(sys.executable).with_name("squawk")
# The oldest server the tests run on: rules that depend on the version judge for it.
PG_VERSION = "15"
STEPS = revision_steps()
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


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.rule}: {self.message}"


def squawk(sql: str, folder: Path) -> list[Finding]:
    script = folder / "migration.sql"
    script.write_text(sql, encoding="utf-8")
    result = subprocess.run(
        [str(SQUAWK), f"--pg-version={PG_VERSION}", "--reporter", "json", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    # squawk exits 1 when it finds something; anything else is squawk failing.
    assert result.returncode in (0, 1) and result.stdout.strip(), (
        f"squawk failed (exit {result.returncode}); is squawk-cli installed (pip install -e"
        f" '.[dev]')?\n{result.stderr}"
    )
    return [Finding(f["rule_name"], f["line"] + 1, f["message"]) for f in json.loads(result.stdout)]


def allowances() -> dict[str, dict[str, dict[str, str]]]:
    with ALLOWANCES_FILE.open("rb") as file:
        return tomllib.load(file)


def revision_sql(step: Step, direction: str) -> str:
    span = (
        f"{step.down_revision}:{step.revision}"
        if direction == "upgrade"
        else f"{step.revision}:{step.down_revision}"
    )
    result = run_alembic(direction, span, "--sql", url=None)
    assert result.returncode == 0, f"alembic {direction} {span} --sql failed:\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("step", STEPS, ids=[s.file_stem for s in STEPS])
def test_revision_sql_has_only_allowed_squawk_findings(
    step: Step, direction: str, tmp_path: Path
) -> None:
    findings = squawk(revision_sql(step, direction), tmp_path)
    allowed = allowances().get(step.revision, {}).get(direction, {})
    unallowed = [f for f in findings if f.rule not in allowed]
    assert not unallowed, (
        f"squawk finds problems in the {direction} of {step.file_stem}:\n"
        + "\n".join(f"  {f}" for f in unallowed)
        + "\nMake the step lock-safe (docs/schema-revisions.md shows how), or, if it is safe"
        f" for a reason squawk cannot see, add it to {ALLOWANCES_FILE.name} under"
        f" [{step.revision}.{direction}] with that reason."
    )
    unused = sorted(set(allowed) - {f.rule for f in findings})
    assert not unused, (
        f"{ALLOWANCES_FILE.name} allows {unused} for the {direction} of {step.file_stem}, but"
        " squawk no longer reports them: remove those entries."
    )


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
    rules = {f.rule for f in squawk(UNSAFE_REVISION_SQL, tmp_path)}
    assert {
        "require-lock-timeout",
        "require-statement-timeout",
        "adding-not-nullable-field",
        "disallowed-unique-constraint",
        "require-concurrent-index-deletion",
    } <= rules, f"squawk no longer reports what made the first version unsafe: {rules}"
