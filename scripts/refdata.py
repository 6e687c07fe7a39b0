"""Declared reference data: check it, generate its migration, lock revision files.

    python scripts/refdata.py check
    python scripts/refdata.py revision -m "tracker rate cut"

See docs/reference-data.md.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from seed_data.startup import run_main

    run_main("seed_data.refdata.cli")
