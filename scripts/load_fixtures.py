"""Load reproducible demo data into a migrated database; see --help and the README.

python scripts/load_fixtures.py --customers 10000 --seed 42
"""

import os
import signal
import sys
from pathlib import Path
from types import FrameType


def _interrupted_before_the_run(signum: int, frame: FrameType | None) -> None:
    # Ctrl-C while Python imports or parses arguments: the command installs its own
    # handler (cancel what is in flight) before it connects, so nothing is written yet.
    # An exception would not do: an import may catch it and carry on into the load.
    os.write(2, b"error: interrupted before the run began: nothing was written\n")
    os._exit(130)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _interrupted_before_the_run)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from seed_data.demo.cli import main

    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done; just exit
    sys.exit(status)
