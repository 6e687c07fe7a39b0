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
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

from seed_data.db import REPO_ROOT
from seed_data.refdata import cli, state
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
        # With __pycache__: compiled revisions stay valid for the copies (they keep their
        # modification times), and compiling the whole history again would cost every test.
        shutil.copytree(REPO_ROOT / "alembic", root / "alembic")
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

    def arguments(self, *args: str, scratch: bool = True) -> list[str]:
        """Options aimed at this workspace; ``scratch=False`` leaves the server to DATABASE_URL."""
        return [
            "--config",
            str(self.ini),
            "--reference-dir",
            str(self.reference),
            *(["--scratch-url", self.scratch_url] if scratch else []),
            *args,
        ]

    def refdata(self, *args: str, scratch: bool = True) -> Result:
        """``refdata.py`` in this process (fast; stdout and stderr captured)."""
        self.capsys.readouterr()
        code = cli.main(self.arguments(*args, scratch=scratch))
        out, err = self.capsys.readouterr()
        return Result(code, out, err)

    def process(
        self,
        *args: str,
        database_url: URL | str | None = None,
        env: dict[str, str] | None = None,
        python: tuple[str, ...] = (),
    ) -> subprocess.Popen[str]:
        """The real ``scripts/refdata.py``, started as a user would start it (``python``:
        options for the interpreter)."""
        return subprocess.Popen(
            [sys.executable, *python, str(REFDATA_SCRIPT), *self.arguments(*args)],
            cwd=self.root,
            env={**alembic_env(database_url), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(
        self, *args: str, database_url: URL | str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        with self.process(*args, database_url=database_url, env=env) as process:
            out, err = process.communicate(timeout=120)
        return Result(process.returncode, out, err)

    def add_revision(
        self,
        message: str,
        upgrade_sql: str | tuple[str, ...],
        downgrade_sql: str | tuple[str, ...],
        on: str | None = None,
    ) -> Path:
        """A hand-written revision running these statements (one ``op.execute`` each), made
        by alembic and locked; on head, or on revision ``on`` (another head, as a branch
        made elsewhere would be)."""
        script = command.revision(
            self.config(), message=message, head=on or "head", splice=on is not None
        )
        assert script is not None
        path = Path(script.path)
        path.write_text(
            f'''"""{message}"""

from alembic import op

revision = {script.revision!r}
down_revision = {script.down_revision!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    {_executes(upgrade_sql)}


def downgrade() -> None:
    {_executes(downgrade_sql)}
''',
            encoding="utf-8",
        )
        assert self.refdata("lock").code == 0
        return path

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


def _executes(sql: str | tuple[str, ...]) -> str:
    statements = (sql,) if isinstance(sql, str) else sql
    return "\n    ".join(f"op.execute({statement!r})" for statement in statements)


def aim_database_url(monkeypatch: pytest.MonkeyPatch, target: sa.Engine | URL) -> None:
    """Point DATABASE_URL (the database ``check --live`` reads) at ``target``."""
    url = target.url if isinstance(target, sa.Engine) else target
    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))


def assert_ruff_clean(path: Path) -> None:
    """A generated revision passes the project's lint and format rules as written."""
    for args in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args, str(path)],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def scratch_migrations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The targets this process migrates refdata's scratch databases to from now on, in
    order (a database copied from a kept one at its target is not migrated)."""
    migrated_to: list[str] = []
    migrate = state.migrate_scratch

    def recorded(engine: sa.Engine, config: Config, target: str, *args: Any, **kwargs: Any) -> None:
        migrated_to.append(target)
        migrate(engine, config, target, *args, **kwargs)

    monkeypatch.setattr(state, "migrate_scratch", recorded)
    return migrated_to
