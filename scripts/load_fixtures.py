"""Load reproducible demo data into a migrated database; see --help and the README.

python scripts/load_fixtures.py --customers 10000 --seed 42
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from seed_data.startup import run_main

    run_main("seed_data.demo.cli")
