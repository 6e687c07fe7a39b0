"""The drill: the team's next revision, of each kind the docs describe, leaves the tests
that cover every revision green. CI runs it on every run (it is part of the README's test
command), so a test that quietly depends on today's head fails here first."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import helpers
from tests.conftest import DEFAULT_SERVER
from tests.helpers import revision_steps
from tests.next_revision import Checkout
from tests.servers import PgServer


@pytest.mark.slow
@pytest.mark.parametrize("pg_server", [DEFAULT_SERVER], indirect=True)
def test_the_next_revision_of_each_kind_leaves_the_history_tests_green(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """In a copy of this checkout: a data change through `refdata.py revision`, a new
    reference table (model, schema revision, declared file, generated data revision) and a
    schema revision that fills a column; then every test marked `history`, on this
    session's first server (as DATABASE_URL). Whether a test depends on today's head does
    not depend on the server's version, and the drill is part of every CI run: one server
    keeps it at half the cost. The tests there that cover each revision (the row round
    trip, the lint gate, the project rules, the smoke walk under traffic) cover the three
    new ones (after DRILL_WALK_FROM, the head found): this run's own cover every one
    before them, so the drill's cost does not grow with the history."""
    url = pg_server.admin_url.render_as_string(hide_password=False)
    checkout = Checkout.copy(tmp_path / "checkout", scratch_url=url)
    found_head = revision_steps()[-1].revision
    checkout.add_data_revision(1)
    checkout.add_reference_table()
    checkout.add_schema_revision()

    result = checkout.pytest(
        "-m",
        "history",
        "-k",
        "not pg15-system",
        "-n",
        "0",
        "-q",
        env={"DATABASE_URL": url, "DRILL_WALK_FROM": found_head},
    )

    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, (
        "after the next revision of each kind, these tests fail in the grown copy; they"
        " depend on today's head, revision count or table count (test what a revision did at"
        " that revision, or derive the count from the history or the models):\n"
        + "\n".join(result.stdout.splitlines()[-40:])
        + result.stderr[-2000:]
    )
    assert " passed" in summary and "skipped" not in summary, summary


def test_in_the_drill_the_per_revision_tests_cover_only_the_revisions_it_added(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = revision_steps()
    monkeypatch.setattr(helpers, "DRILL_WALK_FROM", steps[-3].revision)
    assert helpers.steps_to_cover(steps) == steps[-2:], (
        "in the drill's copy, a test over every revision must cover only those after the head"
        " the drill found: the run that started the drill covers the others"
    )
    monkeypatch.setattr(helpers, "DRILL_WALK_FROM", None)
    assert helpers.steps_to_cover(steps) == steps, "outside the drill, every revision"
