"""Ctrl-C while a command is still starting (importing, parsing its arguments).

A command imports this module first (it imports nothing heavy) and installs the handler;
the command replaces it with its own before it touches a database. An exception would
not do here: an import may catch it and carry on into the work.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

EXIT_INTERRUPTED = 130


def _quit_before_anything_ran(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"error: interrupted before the command began: nothing was written\n")
    os._exit(EXIT_INTERRUPTED)


def quit_on_ctrl_c_until_started() -> None:
    """Until the command installs its own handler, Ctrl-C exits 130 with one line."""
    signal.signal(signal.SIGINT, _quit_before_anything_ran)
