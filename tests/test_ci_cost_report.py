"""bench/ci_cost.py's reading of pytest's output: per-test and per-worker seconds."""

from __future__ import annotations

from bench.ci_cost import per_test_seconds, per_worker_seconds

# What `pytest -n 2 -v --durations=0` prints, trimmed: which worker ran each test, then
# each phase's duration (a parameter may hold spaces).
OUTPUT = """\
[gw0] [ 25%] PASSED tests/test_a.py::test_one[pg18-embedded]
[gw1] [ 50%] PASSED tests/test_a.py::test_one[pg15-system]
[gw1] [ 75%] FAILED tests/test_b.py::test_two[CREATE INDEX CONCURRENTLY-SIGINT]
[gw0] [100%] PASSED tests/test_b.py::test_three
============================= slowest durations ==============================
3.00s call     tests/test_a.py::test_one[pg18-embedded]
0.50s setup    tests/test_a.py::test_one[pg18-embedded]
2.00s call     tests/test_a.py::test_one[pg15-system]
4.25s call     tests/test_b.py::test_two[CREATE INDEX CONCURRENTLY-SIGINT]
0.25s teardown tests/test_b.py::test_three
"""


def test_each_worker_is_charged_every_phase_of_the_tests_it_ran() -> None:
    assert per_worker_seconds(OUTPUT) == {"gw0": 3.75, "gw1": 6.25}


def test_a_test_s_phases_and_parameters_add_up_to_the_function() -> None:
    assert per_test_seconds(OUTPUT) == {
        "tests/test_a.py::test_one": 5.5,
        "tests/test_b.py::test_two": 4.25,
        "tests/test_b.py::test_three": 0.25,
    }


def test_a_test_no_worker_line_names_is_charged_to_an_unknown_worker() -> None:
    without_worker_lines = "\n".join(
        line for line in OUTPUT.splitlines() if not line.startswith("[gw")
    )
    assert per_worker_seconds(without_worker_lines) == {"?": 10.0}
