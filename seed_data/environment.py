"""Which deployment this is: production is named by ``APP_ENV`` or ``ENVIRONMENT``.

One reading for every command that acts differently in production: the demo-data loader
refuses to write there without ``--allow-production``, and ``alembic`` refuses to run a
revision file that is not locked (``seed_data.deploy_checks``).
"""

from __future__ import annotations

import os

# Environment variables that name the deployment, and the values that mean production.
ENVIRONMENT_VARIABLES = ("APP_ENV", "ENVIRONMENT")
PRODUCTION_NAMES = {"prod", "production", "live"}


def production_environment() -> str | None:
    """The variable that says this is production, e.g. ``APP_ENV=production``, if any."""
    for name in ENVIRONMENT_VARIABLES:
        if os.environ.get(name, "").strip().lower() in PRODUCTION_NAMES:
            return f"{name}={os.environ[name]}"
    return None


# Whether this server can be migrated at all: a standby (in recovery) never can, and a
# database whose sessions start read-only refuses the upgrade's first write.
WRITABILITY_QUERY = (
    "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on'"
)


def upgrade_advice(in_recovery: bool, read_only: bool) -> str:
    """What to run to bring a database to head, where it can work: never `alembic upgrade
    head` on a standby, which refuses every write (SQLSTATE 25006)."""
    if in_recovery:
        return (
            "it is a read-only standby, so upgrade its primary (`alembic upgrade head` with "
            "DATABASE_URL on the primary); the standby follows by replication"
        )
    if read_only:
        return (
            "it is read-only (default_transaction_read_only = on), so upgrade it where it can "
            "be written: on the primary, or as a role or database without that setting"
        )
    return "run `alembic upgrade head` there"
