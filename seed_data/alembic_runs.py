"""alembic's ``upgrade`` and ``downgrade`` commands on a script directory loaded once.

``alembic.command.upgrade`` and ``downgrade`` load every revision file again on each call:
with a long history that is most of what a short run costs, and a caller that runs several
(``refdata.py revision``'s proof runs six, the tests hundreds) pays for it each time. These
do what those two do, line for line, but on the ``ScriptDirectory`` they are given.

They hand env.py a step function named like the command, as alembic's do: env.py reads
that name to know it runs ``upgrade`` or ``downgrade`` (seed_data.deploy_checks' validation,
the ``--sql`` guard). The steps come from ``ScriptDirectory._upgrade_revs`` and
``_downgrade_revs``, the methods ``alembic.command`` itself calls.
"""

from __future__ import annotations

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError


def upgrade(
    config: Config, revision: str, *, sql: bool = False, script: ScriptDirectory | None = None
) -> None:
    """``alembic upgrade revision`` (``start:end`` with ``sql``), on ``script`` if given."""
    script = script or ScriptDirectory.from_config(config)
    starting, target = _span(revision, sql)

    def upgrade(heads: object, _context: object) -> object:
        return script._upgrade_revs(target, heads)  # type: ignore[arg-type]

    _run(config, script, upgrade, target, starting, sql)


def downgrade(
    config: Config, revision: str, *, sql: bool = False, script: ScriptDirectory | None = None
) -> None:
    """``alembic downgrade revision`` (``start:end`` with ``sql``), on ``script`` if given."""
    script = script or ScriptDirectory.from_config(config)
    starting, target = _span(revision, sql)
    if sql and starting is None:
        raise CommandError("downgrade with --sql requires <fromrev>:<torev>")

    def downgrade(heads: object, _context: object) -> object:
        return script._downgrade_revs(target, heads)  # type: ignore[arg-type]

    _run(config, script, downgrade, target, starting, sql)


def _span(revision: str, sql: bool) -> tuple[str | None, str]:
    if ":" not in revision:
        return None, revision
    if not sql:
        raise CommandError("Range revision not allowed")
    starting, target = revision.split(":", 1)
    return starting, target


def _run(
    config: Config,
    script: ScriptDirectory,
    steps: object,
    target: str,
    starting: str | None,
    sql: bool,
) -> None:
    with EnvironmentContext(
        config, script, fn=steps, as_sql=sql, starting_rev=starting, destination_rev=target
    ):
        script.run_env()
