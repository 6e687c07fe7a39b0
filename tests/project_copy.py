"""A copy of the project (its code, migrations and declared files) that a test or a benchmark
may change as a developer would, models included, with commands run in it: the copy's own
``seed_data`` is the one imported, never the repository's."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from seed_data.db import REPO_ROOT
from tests.helpers import alembic_env

SCHEMA_REVISION = '''"""{message}

Revision ID: {revision}
Revises: {down_revision}
Create Date: 2027-01-04 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op{imports}

revision: str = "{revision}"
down_revision: str | Sequence[str] | None = "{down_revision}"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply {message}."""
{upgrade}


def downgrade() -> None:
    """Unapply {message}."""
{downgrade}
'''


class ProjectCopy:
    """The project's code, migrations and declared files, copied (from ``source``: the
    repository, or another copy); commands run in it."""

    def __init__(self, root: Path, scratch: str, source: Path = REPO_ROOT) -> None:
        self.root, self.scratch = root, scratch
        # With __pycache__: still valid for the copies, which keep modification times.
        ignore = shutil.ignore_patterns("*.egg-info")
        for name in ("seed_data", "scripts", "alembic"):
            shutil.copytree(source / name, root / name, ignore=ignore)
        shutil.copy(source / "alembic.ini", root / "alembic.ini")

    def env(self, url: sa.URL | None = None) -> dict[str, str]:
        """The environment a command in the copy runs with (``url``: its DATABASE_URL)."""
        return {**alembic_env(url), "PYTHONPATH": str(self.root)}

    def run(self, *args: str, url: sa.URL | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=self.root, env=self.env(url), capture_output=True, text=True, timeout=600
        )

    def refdata(self, *args: str) -> subprocess.CompletedProcess[str]:
        script = str(self.root / "scripts" / "refdata.py")
        return self.run(sys.executable, script, "--scratch-url", self.scratch, *args)

    def alembic(self, *args: str, url: sa.URL) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "alembic", *args, url=url)

    @property
    def versions(self) -> Path:
        return self.root / "alembic" / "versions"

    @property
    def reference(self) -> Path:
        return self.root / "seed_data" / "reference"

    def add_model(self, source: str) -> None:
        """Add a model class (its source) to the copy's models, before the business tables."""
        models = self.root / "seed_data" / "models.py"
        anchor = "\n\n# --- Business data"
        text = models.read_text(encoding="utf-8")
        assert anchor in text, "seed_data/models.py changed: update ProjectCopy.add_model"
        models.write_text(text.replace(anchor, f"\n\n{source.strip()}\n{anchor}", 1))

    def add_schema_revision(
        self, message: str, upgrade: str, downgrade: str, imports: str = ""
    ) -> Path:
        """A revision made by ``alembic revision``, its bodies written as a developer would
        (each a block of statements indented by four spaces; ``imports`` are further import
        lines), then locked."""
        made = self.run(sys.executable, "-m", "alembic", "revision", "-m", message)
        assert made.returncode == 0, made.stderr
        slug = "_".join(message.split())
        (path,) = self.versions.glob(f"*_{slug}.py")
        text = path.read_text(encoding="utf-8")
        down = re.search(r'^down_revision[^=]*= "?(\w+)', text, re.MULTILINE)
        assert down is not None, text
        path.write_text(
            SCHEMA_REVISION.format(
                message=message,
                revision=path.name.split("_")[4],
                down_revision=down[1],
                upgrade=upgrade.rstrip(),
                downgrade=downgrade.rstrip(),
                imports=f"\n{imports}" if imports else "",
            ),
            encoding="utf-8",
        )
        locked = self.refdata("lock")
        assert locked.returncode == 0, locked.stdout + locked.stderr
        return path
