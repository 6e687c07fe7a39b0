"""``alembic upgrade`` and ``downgrade`` validate before their first step: one line naming
the file and what to run, exit status non-zero, and the database unchanged.

* a revision file whose checksum differs from its lock line;
* an applied revision whose recorded checksum is no text of its file the lock knows
  (Flyway's validate-on-migrate);
* in production (APP_ENV or ENVIRONMENT), a revision file that is not locked;
* ``-x override=REASON`` runs anyway, and every step it runs records the reason.

Revisions are written in a copy of the migrations (tests/refdata_support.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from seed_data.environment import ENVIRONMENT_VARIABLES
from tests.helpers import (
    current_revision,
    history_appended,
    history_rows,
    run_alembic,
    snapshot_rows,
)
from tests.refdata_support import Workspace

TRACKER_CUT = (
    "UPDATE products SET interest_rate = 4.49 WHERE code = 'tracker_mortgage'",
    "UPDATE products SET interest_rate = 4.74 WHERE code = 'tracker_mortgage'",
)
LOAN_CUT = (
    "UPDATE products SET interest_rate = 5.90 WHERE code = 'personal_loan'",
    "UPDATE products SET interest_rate = 6.40 WHERE code = 'personal_loan'",
)


def alembic(
    workspace: Workspace, engine: sa.Engine, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real ``alembic`` on the workspace's migrations."""
    return run_alembic("-c", str(workspace.ini), *args, url=engine.url, env=env)


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The one FAILED line of a refused run, holding every fragment."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("FAILED: ")]
    for fragment in fragments:
        assert fragment in line, line
    assert "Nothing was run" in line and "-x override=REASON" in line
    return line


def unchanged(engine: sa.Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return snapshot_rows(conn)


@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
def test_an_edited_revision_file_is_refused_before_any_step(
    direction: str, workspace: Workspace, head_engine: sa.Engine
) -> None:
    cut = workspace.add_revision("tracker cut", *TRACKER_CUT)
    if direction == "downgrade":
        command.upgrade(workspace.config(head_engine), "head")
    cut.write_text(cut.read_text().replace("4.49", "4.39"))  # edited after review
    before = unchanged(head_engine)

    result = alembic(workspace, head_engine, direction, "head" if direction == "upgrade" else "-1")

    refused(
        result,
        f"{cut} differs from its line in {workspace.lock} (edited after it was locked)",
        f"git checkout -- {cut}",
        f"refdata.py lock --rehash {cut.name}",
    )
    assert unchanged(head_engine) == before


def test_an_applied_revision_that_ran_another_text_is_refused(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    cut = workspace.add_revision("tracker cut", *TRACKER_CUT)
    command.upgrade(workspace.config(head_engine), "head")
    cut.write_text(cut.read_text() + "# a hotfix made after release\n")
    assert workspace.refdata("lock", "--rehash", cut.name).code == 0  # only the database knows
    loan = workspace.add_revision("loan cut", *LOAN_CUT)
    before = unchanged(head_engine)

    result = alembic(workspace, head_engine, "upgrade", "head")

    line = refused(result, f"ran revision {cut.name.split('_')[4]} from a text of {cut}")
    assert "no text of that file in" in line and f"git log -p -- {cut}" in line
    assert unchanged(head_engine) == before, f"{loan.name} ran though validation failed"


@pytest.mark.parametrize("variable", ENVIRONMENT_VARIABLES)
def test_in_production_an_unlocked_revision_file_is_refused(
    variable: str, workspace: Workspace, head_engine: sa.Engine
) -> None:
    script = command.revision(workspace.config(), message="not reviewed")
    assert script is not None
    before = unchanged(head_engine)
    outside = {name: "" for name in ENVIRONMENT_VARIABLES}

    result = alembic(workspace, head_engine, "upgrade", "head", env={**outside, variable: "Live"})

    refused(result, f"{variable}=Live: {Path(script.path)} is not locked", "`refdata.py lock`")
    assert unchanged(head_engine) == before
    # Outside production, trying a revision before locking it is how one writes it.
    result = alembic(workspace, head_engine, "upgrade", "head", env=outside)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_override_runs_and_every_step_it_ran_records_why(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    cut = workspace.add_revision("tracker cut", *TRACKER_CUT)
    cut.write_text(cut.read_text() + "# edited after review\n")
    with head_engine.connect() as conn:
        before = history_rows(conn)

    result = alembic(
        workspace,
        head_engine,
        "-x",
        "override=hotfix OPS-42, approved by the on-call lead",
        "upgrade",
        "head",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "override (hotfix OPS-42" in result.stderr and "differs from its line" in result.stderr
    with head_engine.connect() as conn:
        (row,) = history_appended(before, history_rows(conn))
        assert current_revision(conn) == cut.name.split("_")[4]
    assert row["note"].startswith(
        "validation overridden (hotfix OPS-42, approved by the on-call lead): "
    )
    assert f"{cut.name} differs from its line" in row["note"]

    result = alembic(workspace, head_engine, "-x", "override=", "downgrade", "-1")
    assert result.returncode != 0 and "-x override needs a reason on one line" in result.stdout
