"""Load reproducible demo data into a migrated database; see --help and the README.

python scripts/load_fixtures.py --customers 10000 --seed 42
"""

import signal
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from seed_data.startup import quit_on_ctrl_c_until_started

    quit_on_ctrl_c_until_started()
    from seed_data.demo.cli import main

    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done; just exit
    sys.exit(status)
