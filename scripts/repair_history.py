"""Make a dropped or damaged migration_history usable again: the one documented recovery.

    python scripts/repair_history.py      # on DATABASE_URL (or the embedded server)

Keeps every row that survives and marks what was lost as lost. See docs/reference-data.md,
"Repairing the history".
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from seed_data.startup import run_main

    run_main("seed_data.history_repair")
