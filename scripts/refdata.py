"""Declared reference data: check it, generate its migration, lock revision files.

    python scripts/refdata.py check
    python scripts/refdata.py revision -m "tracker rate cut"

See docs/reference-data.md.
"""

import signal
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from seed_data.startup import quit_on_ctrl_c_until_started

    quit_on_ctrl_c_until_started()
    from seed_data.refdata.cli import main

    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done; just exit
    sys.exit(status)
