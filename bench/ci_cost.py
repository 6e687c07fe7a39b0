"""Benchmark: what each new revision adds to CI (the README's test command).

    .venv/bin/python bench/ci_cost.py                          # +100 revisions, the whole suite
    .venv/bin/python bench/ci_cost.py --revisions 25 --explain 15
    .venv/bin/python bench/ci_cost.py -- tests/test_round_trip.py -n 0   # some tests only

Two copies of this checkout (its files, without .git, .venv or .pgdata; or of
``--source``) go into a temporary directory: the baseline, and one grown by ``--revisions`` data revisions, each
made as the docs say (the Cash ISA's rate edited in seed_data/reference/products.yaml,
then ``scripts/refdata.py revision -m ...``, proved on a throwaway embedded server). Then
the test command (this checkout's ``.venv/bin/pytest``, with the arguments after ``--``)
runs in each copy in turn, ``--rounds`` times, the order alternating; the report gives the
median of each, the difference, and the cost per revision and per 100 revisions against
the target (at most 60 s per 100 revisions). ``--explain K`` adds pytest's per-test
durations, lists the K tests whose time grew most, and gives each run's busy time per xdist
worker: a run is as long as its busiest worker, so time one worker spends alone at the end
shows there. Exit status 0 when the target is met.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.next_revision import Checkout  # noqa: E402
from tests.servers import embedded_server  # noqa: E402

TARGET_PER_100 = 60.0
DURATION = re.compile(r"^\s*([\d.]+)s\s+(?:setup|call|teardown)\s+(\S+?)(\[.*\])?\s*$")
# pytest-xdist's -v line for a finished test: "[gw0] [ 12%] PASSED tests/...::test[params]"
RAN_ON = re.compile(r"^\[(gw\d+)\] \[\s*\d+%\] [A-Z]+ (\S+?(?:\[.*\])?)\s*$")


@dataclass
class Runs:
    name: str
    checkout: Checkout
    seconds: list[float] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    per_test: list[dict[str, float]] = field(default_factory=list)
    per_worker: list[dict[str, float]] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def per_test_seconds(output: str) -> dict[str, float]:
    """pytest's --durations lines, summed per test function (phases and parameters)."""
    totals: dict[str, float] = defaultdict(float)
    for line in output.splitlines():
        if match := DURATION.match(line):
            totals[match[2]] += float(match[1])
    return dict(totals)


def per_worker_seconds(output: str) -> dict[str, float]:
    """pytest's --durations lines (all phases) summed per xdist worker, from -v's lines
    that say which worker ran each test."""
    lines = output.splitlines()
    worker = {m[2]: m[1] for line in lines if (m := RAN_ON.match(line))}
    totals: dict[str, float] = defaultdict(float)
    for line in lines:
        if match := DURATION.match(line):
            totals[worker.get(match[2] + (match[3] or ""), "?")] += float(match[1])
    return dict(sorted(totals.items()))


def run_suite(runs: Runs, pytest_args: list[str], explain: bool, console: Console) -> None:
    args = [*pytest_args, *(["--durations=0", "-v"] if explain else [])]
    started = time.monotonic()
    result = runs.checkout.pytest(*args)
    seconds = time.monotonic() - started
    lines = result.stdout.strip().splitlines()
    outcome = lines[-1].strip("= ") if lines else f"exit {result.returncode}"
    runs.seconds.append(seconds)
    runs.outcomes.append(outcome)
    runs.per_test.append(per_test_seconds(result.stdout))
    runs.per_worker.append(per_worker_seconds(result.stdout))
    busy = ", ".join(f"{w} {s:.0f} s" for w, s in runs.per_worker[-1].items())
    console.print(
        f"  {runs.name}: {seconds:.1f} s ({outcome})" + (f"; busy: {busy}" if busy else "")
    )
    for line in lines:
        if line.startswith(("FAILED ", "ERROR ")):
            console.print(f"    {line}", soft_wrap=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revisions", type=int, default=100, help="revisions to add (100)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each copy (1)")
    parser.add_argument("--explain", type=int, default=0, metavar="K", help="top K test deltas")
    parser.add_argument(
        "--source",
        type=Path,
        default=REPO_ROOT,
        help="the tree to copy (default this checkout; e.g. an older one, from git archive)",
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="put the copies in DIR and leave them there"
    )
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    args = parser.parse_args()
    if args.revisions <= 0 or args.rounds <= 0:
        parser.error("--revisions and --rounds must be more than zero")
    console = Console(highlight=False, width=130)

    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        copies: contextlib.AbstractContextManager[str] = contextlib.nullcontext(str(args.keep))
    else:
        copies = tempfile.TemporaryDirectory(prefix="ci-cost-")
    with copies as tmp, embedded_server() as server:
        scratch = server.admin_url.render_as_string(hide_password=False)
        base = Runs("baseline", Checkout.copy(Path(tmp) / "baseline", scratch, args.source))
        grown = Runs(f"+{args.revisions}", Checkout.copy(Path(tmp) / "grown", scratch, args.source))
        started = time.monotonic()
        for number in range(1, args.revisions + 1):
            grown.checkout.add_data_revision(number)
            if number % 10 == 0 or number == args.revisions:
                console.print(
                    f"generated {number}/{args.revisions} revisions"
                    f" ({time.monotonic() - started:.0f} s)"
                )
        for round_ in range(args.rounds):
            console.print(f"round {round_ + 1}/{args.rounds}: pytest {' '.join(args.pytest_args)}")
            for runs in (base, grown) if round_ % 2 == 0 else (grown, base):
                run_suite(runs, args.pytest_args, args.explain > 0, console)

    added = grown.median - base.median
    per_100 = added / args.revisions * 100
    table = Table(title=f"The test command, {args.rounds} round(s), median wall time")
    for column in ("copy", "revisions", "runs (s)", "median (s)", "outcome"):
        table.add_column(column, justify="left" if column in ("copy", "outcome") else "right")
    for runs, count in ((base, "as checked out"), (grown, f"+{args.revisions}")):
        shown = ", ".join(f"{s:.1f}" for s in runs.seconds)
        table.add_row(runs.name, count, shown, f"{runs.median:.1f}", runs.outcomes[-1])
    console.print(table)
    console.print(
        f"added by {args.revisions} revisions: {added:+.1f} s ({grown.median / base.median:.2f}x);"
        f" {added / args.revisions:+.2f} s per revision, {per_100:+.1f} s per 100"
        f" (target <= {TARGET_PER_100:.0f} s per 100): {'MET' if per_100 <= TARGET_PER_100 else 'NOT MET'}"
    )
    if args.explain:
        explain(base, grown, args.explain, console)
    return 0 if per_100 <= TARGET_PER_100 else 1


def explain(base: Runs, grown: Runs, top: int, console: Console) -> None:
    """The tests whose time grew most (summed over servers and phases, median of rounds)."""

    def medians(runs: Runs) -> dict[str, float]:
        names = {name for seconds in runs.per_test for name in seconds}
        return {n: statistics.median(s.get(n, 0.0) for s in runs.per_test) for n in names}

    before, after = medians(base), medians(grown)
    deltas = sorted(((after.get(n, 0) - before.get(n, 0), n) for n in before | after), reverse=True)
    table = Table(title=f"Tests whose time grew most (+{grown.name[1:]} revisions)")
    for column in ("test", "baseline s", "grown s", "added s"):
        table.add_column(column, justify="left" if column == "test" else "right")
    for delta, name in deltas[:top]:
        table.add_row(
            name, f"{before.get(name, 0):.1f}", f"{after.get(name, 0):.1f}", f"{delta:+.1f}"
        )
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
