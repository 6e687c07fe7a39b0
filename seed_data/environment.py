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
