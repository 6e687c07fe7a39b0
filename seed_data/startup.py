"""Running a command's ``main()`` from a thin script, Ctrl-C handled from the start.

While the command is still starting (importing, parsing its arguments), Ctrl-C exits 130
with one line; the command replaces that handler with its own before it touches a
database. An exception would not do there: an import may catch it and carry on into the
work. This module imports nothing heavy, so the script can import it first.

A reader that stops early (``refdata.py revision ... | head``) does not stop the command
either: once stdout's pipe is closed, the rest of the output goes nowhere, the work goes
on, and the exit status says what the work did.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from types import FrameType
from typing import Any, NoReturn, TextIO


def _quit_before_anything_ran(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"error: interrupted before the command began: nothing was written\n")
    os._exit(128 + signum)  # the shell's status for a signal, as the commands exit too


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
    """Import ``module`` and exit with what its ``main()`` returns."""
    signal.signal(signal.SIGINT, _quit_before_anything_ran)
    sys.stdout = OutputMayBeCut(sys.stdout)  # type: ignore[assignment]
    status = importlib.import_module(module).main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done; just exit
    sys.exit(status)
