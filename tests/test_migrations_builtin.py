"""pytest-alembic's own checks that the history walk does not already make, on every server.

* a single head;
* the models match the DDL at head (on a copy of the database migrated to head once per
  server, so its upgrade from base is not run again here).

Its other built-ins walk the history in ways that cost more per revision than this
project can afford as the history grows (one database step at a time, and the
experimental ``test_downgrade_leaves_no_trace`` autogenerate-compares every revision);
``test_every_revision_round_trips_rows_and_schema`` (tests/test_round_trip.py) makes the
same checks in one walk: every upgrade from its predecessor runs (``test_upgrade``), every
downgrade runs (``test_up_down_consistency``), and each leaves the schema it found, down
to triggers, sequences and types (``test_downgrade_leaves_no_trace``), and the rows too.

migration_history needs nothing special here: its table is in the models, so model-vs-DDL
holds it to its revision. Its rows are tested in tests/test_round_trip.py and
tests/test_migration_history.py.
"""

import pytest
from pytest_alembic.tests import test_model_definitions_match_ddl, test_single_head_revision

pytestmark = pytest.mark.history

__all__ = ["test_model_definitions_match_ddl", "test_single_head_revision"]
