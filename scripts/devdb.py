"""Look at the database the project is using: its URL, a psql shell, or stop the embedded one.

    python scripts/devdb.py url      # print the URL (password masked unless --show-password)
    python scripts/devdb.py psql     # open psql on it (extra arguments go to psql)
    python scripts/devdb.py stop     # stop the embedded server under .pgdata/

With DATABASE_URL unset these start the embedded PostgreSQL on demand, like alembic does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seed_data.db import (
    DatabaseUrlError,
    configured_url,
    database_url,
    embedded_bin_dir,
    libpq_connection,
    libpq_url,
    redact,
    stop_embedded_server,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    url_cmd = commands.add_parser("url", help="print the database URL")
    url_cmd.add_argument(
        "--show-password", action="store_true", help="print the password instead of ***"
    )
    commands.add_parser("psql", help="open psql on the database; other arguments go to psql")
    commands.add_parser("stop", help="stop the embedded server (no-op with DATABASE_URL)")
    args, psql_args = parser.parse_known_args(argv)
    if psql_args and args.command != "psql":
        parser.error(f"unrecognized arguments: {' '.join(psql_args)}")

    if args.command == "stop":
        if configured_url():
            print("DATABASE_URL is set: there is no embedded server to stop.")
        elif stop_embedded_server():
            print("Stopped the embedded PostgreSQL server.")
        else:
            print("The embedded PostgreSQL server is not running.")
        return 0

    try:
        url = database_url()
    except DatabaseUrlError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.command == "url":
        print(libpq_url(url) if args.show_password else redact(url))
        return 0

    # Prefer the embedded wheel's psql (matches the embedded server); fall back to PATH.
    psql = embedded_bin_dir() / "psql"
    if not psql.exists():
        psql = Path(shutil.which("psql") or "psql")
    print(f"Connecting to {redact(url)}", file=sys.stderr, flush=True)
    target, env = libpq_connection(url)
    os.execve(psql, [str(psql), target, *psql_args], env)
    return 0  # not reached: execve replaces this process


if __name__ == "__main__":
    sys.exit(main())
