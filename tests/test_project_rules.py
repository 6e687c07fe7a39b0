"""Rules of the codebase that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from seed_data.db import REPO_ROOT
from tests.helpers import DRILL_WALK_FROM, revision_steps, steps_to_cover

pytestmark = pytest.mark.history
# Every file in versions/, a stray one too; in the drill's copy, the revisions it added.
VERSIONS = sorted((REPO_ROOT / "alembic" / "versions").glob("*.py"))
if DRILL_WALK_FROM is not None:
    ADDED = {step.file_stem for step in steps_to_cover(revision_steps())}
    VERSIONS = [path for path in VERSIONS if path.stem in ADDED]
# A migration must give the same result forever: only these may be imported.
# psycopg2, the driver every URL is normalised to, for COPY: revisions carrying thousands of
# rows send them with it (seed_data/refdata/migration.py says why).
ALLOWED_IMPORT_ROOTS = {"alembic", "sqlalchemy", "psycopg2", *sys.stdlib_module_names}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or ".").split(".")[0] if node.level == 0 else ".")
    return roots


@pytest.mark.parametrize("path", VERSIONS, ids=[p.stem for p in VERSIONS])
def test_migration_imports_no_app_code(path: Path) -> None:
    foreign = imported_roots(path) - ALLOWED_IMPORT_ROOTS
    assert not foreign, (
        f"{path.name} imports {sorted(foreign)}: migrations may import only alembic, sqlalchemy,"
        " the driver (psycopg2) and the standard library. Copy the values you need into the file as constants and"
        " describe tables with sa.table()/sa.column()."
    )


@pytest.mark.parametrize(
    "args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"]
)
def test_ruff_is_clean(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, (
        f"ruff {' '.join(args)} failed; run `ruff check --fix . && ruff format .`:\n"
        f"{result.stdout}{result.stderr}"
    )
