"""pytest-alembic's own checks, run against every server.

single head, upgrade base→head, models match the migrated DDL, every downgrade runs, and
(experimental) every downgrade leaves no schema trace. These compare schema only;
tests/test_round_trip.py compares rows.

migration_history needs nothing special here: every step appends rows to it, but these
tests compare DDL, not rows; its table is in the models (so model-vs-DDL holds it to its
revision) and is created and dropped by that revision alone (so no downgrade leaves a
trace). Its rows are tested in tests/test_round_trip.py and tests/test_migration_history.py.
"""

from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from pytest_alembic.tests.experimental import test_downgrade_leaves_no_trace

__all__ = [
    "test_downgrade_leaves_no_trace",
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]
