"""Running a command's ``main()`` from a thin script, Ctrl-C handled from the start.

While the command is still starting (importing, parsing its arguments), Ctrl-C exits 130
with one line; the command replaces that handler with its own before it touches a
database. An exception would not do there: an import may catch it and carry on into the
work. The script installs that handler on its first line, before importing anything
(this module included): an import is Python code, and Ctrl-C during it would be a
traceback. What remains out of reach is Python's own start-up, before the script's first
line (README, "Demo data").

A reader that stops early (``refdata.py revision ... | head``) does not stop the command
either: once stdout's pipe is closed, the rest of the output goes nowhere, the work goes
on, and the exit status says what the work did.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any, NoReturn, TextIO


class OutputMayBeCut:
    """stdout that, once its reader has gone (EPIPE), sends the rest to /dev/null."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._cut()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._cut()

    def _cut(self) -> None:
        nowhere = os.open(os.devnull, os.O_WRONLY)
        os.dup2(nowhere, self._stream.fileno())
        os.close(nowhere)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def run_main(module: str) -> NoReturn:
    """Import ``module`` and exit with what its ``main()`` returns; the script has already
    made Ctrl-C exit 130 until ``main()`` installs its own handler."""
    sys.stdout = OutputMayBeCut(sys.stdout)  # type: ignore[assignment]
    status = importlib.import_module(module).main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done; just exit
    sys.exit(status)
