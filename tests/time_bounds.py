"""Bounds for tests that wait on a timeout.

A test that provokes a timeout passes just as well after waiting out a 60 s one as a
100 ms one, unless it says how long the wait may take. These bounds are not speed targets
(those are measured by bench/): they sit far above the timeout the test sets and far below
the long one a defect would wait out instead, so a busy machine does not trip them.
"""

from __future__ import annotations

import time


def assert_within(started: float, seconds: float, what: str) -> float:
    """The seconds since ``started`` (a ``time.monotonic()``), which must be under ``seconds``."""
    elapsed = time.monotonic() - started
    assert elapsed < seconds, (
        f"{what} took {elapsed:.1f} s, more than the {seconds:g} s allowed: it waited out a "
        "longer timeout than the one the test set (a setting overridden or ignored?)"
    )
    return elapsed
