"""alembic's upgrade and downgrade, online and ``--sql``, with the script directory loaded once.

``alembic.command`` loads every revision file again on each call. A test that walks the
whole history one step at a time would pay for that on every step, so its cost would grow
with the square of the history's length. These run on one ``ScriptDirectory``
(seed_data.alembic_runs), as a run on a database of the test's own: without the deploy
validation, whose own tests are tests/test_deploy_validation.py.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from seed_data import alembic_runs
from seed_data.refdata.state import SCRATCH_RUN
from tests.helpers import ALEMBIC_INI


class Migrator:
    """Upgrades and downgrades ``engine`` (or, without one, writes ``--sql`` scripts) with
    the alembic.ini ``ini``; ``x_arguments`` are what ``alembic -x name=value`` passes."""

    def __init__(
        self, engine: sa.Engine | None = None, ini: Path = ALEMBIC_INI, **x_arguments: object
    ) -> None:
        self._ini, self._x = ini, x_arguments
        self.config = self._config(engine)
        self.script = ScriptDirectory.from_config(self.config)

    def _config(self, engine: sa.Engine | None, **kwargs: Any) -> Config:
        config = Config(str(self._ini), **kwargs)
        config.cmd_opts = argparse.Namespace(x=[f"{k}={v}" for k, v in self._x.items()])
        # Not again on every run: the test's own logging stays as it is.
        config.attributes["skip_logging_config"] = True
        config.attributes[SCRATCH_RUN] = True
        if engine is not None:
            config.attributes["connection"] = engine  # env.py takes its own lock on it
        return config

    def upgrade(self, target: str) -> None:
        alembic_runs.upgrade(self.config, target, script=self.script)

    def downgrade(self, target: str) -> None:
        alembic_runs.downgrade(self.config, target, script=self.script)

    def sql(self, direction: str, start: str, end: str) -> str:
        """What ``alembic <direction> start:end --sql`` writes."""
        buffer = io.StringIO()
        config = self._config(None, output_buffer=buffer)
        getattr(alembic_runs, direction)(config, f"{start}:{end}", sql=True, script=self.script)
        return buffer.getvalue()
