"""What the reference-toolkit tests share: a workspace holding copies of the migrations and
of the declared files, and ways to run ``refdata.py`` on it (in-process or as a process).

Tests change the copies under ``tmp_path``; the repository itself is never written.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy.engine import URL

from seed_data.db import REPO_ROOT
from seed_data.refdata import cli
from seed_data.refdata.declared import REFERENCE_DIR
from tests.helpers import alembic_env

REFDATA_SCRIPT = REPO_ROOT / "scripts" / "refdata.py"
# Nothing listens here: a test that uses it proves no database was needed.
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@dataclass
class Workspace:
    """A copy of alembic.ini, alembic/ and the declared files that a test may change."""

    root: Path
    capsys: pytest.CaptureFixture[str]
    scratch_url: str

    @classmethod
    def create(
        cls, root: Path, capsys: pytest.CaptureFixture[str], scratch: URL | str
    ) -> Workspace:
        shutil.copy(REPO_ROOT / "alembic.ini", root / "alembic.ini")
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO_ROOT / "alembic", root / "alembic", ignore=ignore)
        shutil.copytree(REFERENCE_DIR, root / "reference")
        if isinstance(scratch, URL):
            scratch = scratch.render_as_string(hide_password=False)
        return cls(root, capsys, scratch)

    @property
    def ini(self) -> Path:
        return self.root / "alembic.ini"

    @property
    def reference(self) -> Path:
        return self.root / "reference"

    @property
    def versions(self) -> Path:
        return self.root / "alembic" / "versions"

    @property
    def lock(self) -> Path:
        return self.root / "alembic" / "versions.sha256"

    def config(self, engine: sa.Engine | None = None) -> Config:
        config = Config(str(self.ini))
        if engine is not None:
            config.attributes["connection"] = engine
        return config

    def edit(self, table: str, old: str, new: str) -> None:
        path = self.reference / f"{table}.yaml"
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {path.name}: the test's edit is out of date"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def arguments(self, *args: str) -> list[str]:
        return [
            "--config",
            str(self.ini),
            "--reference-dir",
            str(self.reference),
            "--scratch-url",
            self.scratch_url,
            *args,
        ]

    def refdata(self, *args: str) -> Result:
        """``refdata.py`` in this process (fast; stdout and stderr captured)."""
        self.capsys.readouterr()
        code = cli.main(self.arguments(*args))
        out, err = self.capsys.readouterr()
        return Result(code, out, err)

    def process(self, *args: str, database_url: URL | str | None = None) -> subprocess.Popen[str]:
        """The real ``scripts/refdata.py``, started as a user would start it."""
        return subprocess.Popen(
            [sys.executable, str(REFDATA_SCRIPT), *self.arguments(*args)],
            cwd=self.root,
            env=alembic_env(database_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, database_url: URL | str | None = None) -> Result:
        with self.process(*args, database_url=database_url) as process:
            out, err = process.communicate(timeout=120)
        return Result(process.returncode, out, err)

    def new_revision_files(self) -> list[Path]:
        known = {p.name for p in (REPO_ROOT / "alembic" / "versions").glob("*.py")}
        return sorted(p for p in self.versions.glob("*.py") if p.name not in known)

    def untouched(self) -> bool:
        """No revision file and no lock line beyond the repository's own, nor a stray temp file."""
        repository_lock = (REPO_ROOT / "alembic" / "versions.sha256").read_text(encoding="utf-8")
        leftovers = [p for p in self.versions.iterdir() if p.suffix != ".py" and p.is_file()]
        return (
            not self.new_revision_files()
            and not leftovers
            and self.lock.read_text(encoding="utf-8") == repository_lock
        )
