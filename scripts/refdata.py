"""Declared reference data: check it, generate its migration, lock revision files.

    python scripts/refdata.py check
    python scripts/refdata.py revision -m "tracker rate cut"

See docs/reference-data.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seed_data.refdata.cli import main

if __name__ == "__main__":
    sys.exit(main())
