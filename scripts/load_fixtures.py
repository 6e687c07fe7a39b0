"""Load reproducible demo data into a migrated database; see --help and the README.

python scripts/load_fixtures.py --customers 10000 --seed 42
"""

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":
    try:
        # Ctrl-C while Python is still importing, before the command handles it itself.
        from seed_data.demo.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted: nothing was written\n")
        sys.exit(130)
    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done; just exit
    sys.exit(status)
