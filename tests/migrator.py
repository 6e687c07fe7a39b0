"""alembic's upgrade and downgrade, online and ``--sql``, with the script directory loaded once.

``alembic.command`` loads every revision file again on each call. A test that walks the
whole history one step at a time would pay for that on every step, so its cost would grow
with the square of the history's length. These run the same ``env.py`` the same way
``alembic.command`` does (an ``EnvironmentContext`` around ``run_env()``), on one
``ScriptDirectory``.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory

from tests.helpers import ALEMBIC_INI

Revisions = Callable[[Any, Any], Any]


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
        if engine is not None:
            config.attributes["connection"] = engine  # env.py takes its own lock on it
        return config

    def upgrade(self, target: str) -> None:
        # alembic.command.upgrade's own step function (a private method, as there).
        self._run(self.config, lambda heads, _: self.script._upgrade_revs(target, heads), target)

    def downgrade(self, target: str) -> None:
        self._run(self.config, lambda heads, _: self.script._downgrade_revs(target, heads), target)

    def sql(self, direction: str, start: str, end: str) -> str:
        """What ``alembic <direction> start:end --sql`` writes."""
        buffer = io.StringIO()
        config = self._config(None, output_buffer=buffer)
        if direction == "upgrade":
            steps: Revisions = lambda heads, _: self.script._upgrade_revs(end, heads)  # noqa: E731
        else:
            steps = lambda heads, _: self.script._downgrade_revs(end, heads)  # noqa: E731
        self._run(config, steps, end, as_sql=True, starting_rev=start)
        return buffer.getvalue()

    def _run(self, config: Config, steps: Revisions, target: str, **options: Any) -> None:
        with EnvironmentContext(config, self.script, fn=steps, destination_rev=target, **options):
            self.script.run_env()
