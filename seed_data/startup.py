"""Running a command's ``main()`` from a thin script, Ctrl-C handled from the start.

While the command is still starting (importing, parsing its arguments), Ctrl-C exits 130
with one line; the command replaces that handler with its own before it touches a
database. An exception would not do there: an import may catch it and carry on into the
work. This module imports nothing heavy, so the script can import it first.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from types import FrameType
from typing import NoReturn


def _quit_before_anything_ran(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"error: interrupted before the command began: nothing was written\n")
    os._exit(128 + signum)  # the shell's status for a signal, as the commands exit too


def run_main(module: str) -> NoReturn:
    """Import ``module`` and exit with what its ``main()`` returns."""
    signal.signal(signal.SIGINT, _quit_before_anything_ran)
    status = importlib.import_module(module).main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done; just exit
    sys.exit(status)
