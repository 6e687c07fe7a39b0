"""Load reproducible demo data into a migrated database; see --help and the README.

python scripts/load_fixtures.py --customers 10000 --seed 42
"""

if __name__ == "__main__":
    # First of all: Ctrl-C while the command is still starting exits 130 with one line
    # (seed_data/startup.py). _signal and os are loaded with Python itself, so these lines
    # run no import code that Ctrl-C could interrupt with a traceback.
    import _signal
    import os

    _signal.signal(
        _signal.SIGINT,
        lambda signum, _frame: (
            os.write(2, b"error: interrupted before the command began: nothing was written\n"),
            os._exit(128 + signum),  # the shell's status for a signal, as the commands exit too
        ),
    )

    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from seed_data.startup import run_main

    run_main("seed_data.demo.cli")
