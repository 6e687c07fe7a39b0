"""pytest-alembic's own checks, run against every server.

single head, upgrade base→head, models match the migrated DDL, and every downgrade
brings the schema back (schema only; tests/test_round_trip.py compares rows).
"""

from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

__all__ = [
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]
