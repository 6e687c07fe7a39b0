"""Ctrl-C tests whose clock starts once the script's first lines have run.

Before a script's first line, Python starts up (it imports ``site``, then checks whether
the script's path is a zip archive); Ctrl-C there is Python's own, out of any command's
reach (README, "Demo data"), and on a busy machine it lasts longer than a test's first
pause. Started with ``-X importtime``, Python reports each import on stderr as it
finishes: the line for ``seed_data``, the first of the project's own modules a script
imports, comes after the script's first lines (which make Ctrl-C one line), and the test
counts from there: at 0 s, Ctrl-C lands in the script's imports.
"""

from __future__ import annotations

import subprocess
import threading

IMPORT_TIMES = ("-X", "importtime")


class Stderr:
    """The stderr of a process started with :data:`IMPORT_TIMES`, read as it comes, without
    the import-time lines."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._lines: list[str] = []
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if not line.startswith("import time:"):
                self._lines.append(line)
            elif line.rsplit("|", 1)[-1].strip() == "seed_data":  # the package itself
                self._started.set()
        self._started.set()  # the process ended first; the test will say how

    def wait_for_start_up(self, timeout: float = 60) -> None:
        assert self._started.wait(timeout), "the script never imported seed_data"

    def text(self, timeout: float = 60) -> str:
        """Everything else the process wrote to stderr, once it has ended."""
        self._thread.join(timeout)
        return "".join(self._lines)
