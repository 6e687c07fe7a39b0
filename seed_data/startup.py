"""Running a command's ``main()`` from a thin script, Ctrl-C handled from the start.

While the command is still starting (importing, parsing its arguments), Ctrl-C exits 130
with one line; the command replaces that handler with its own before it touches a
database. An exception would not do there: an import may catch it and carry on into the
work. The script installs that handler on its first line, before importing anything
(this module included): an import is Python code, and Ctrl-C during it would be a
traceback. What remains out of reach is Python's own start-up, before the script's first
line (README, "Demo data").
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import NoReturn


def run_main(module: str) -> NoReturn:
    """Import ``module`` and exit with what its ``main()`` returns; the script has already
    made Ctrl-C exit 130 until ``main()`` installs its own handler."""
    status = importlib.import_module(module).main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done; just exit
    sys.exit(status)
