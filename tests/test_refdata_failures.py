"""Every failure a user can meet with ``refdata.py`` is one line with the right exit status.

Forked histories, bad configs, roles that lack a privilege, live databases changed behind
the migrations' back, rows still in use, a missing ruff, and a SIGTERM in the middle: each
gives one line on stderr (never a traceback, never a password), exit 2 for bad input or an
unusable database and 1 for drift, and nothing written.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from seed_data.refdata import live
from seed_data.refdata.lock import check_lock
from seed_data.refdata.state import SCRATCH_PREFIX
from tests.helpers import insert_account, insert_customer, run_alembic, snapshot_rows
from tests.refdata_support import (
    UNREACHABLE,
    Result,
    Workspace,
    aim_database_url,
    assert_ruff_clean,
)
from tests.servers import PgServer
from tests.startup_support import IMPORT_TIMES, Stderr
from tests.time_bounds import assert_within

PASSWORD = "p@ss w0rd:/?"


def one_line(err: str) -> str:
    """The single line a refusal must be; fails on tracebacks and multi-line chatter."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@contextmanager
def login_role(pg_server: PgServer, options: str = "") -> Iterator[str]:
    """A throwaway role that can log in (password PASSWORD), dropped afterwards."""
    name = f"refdata_{uuid.uuid4().hex[:8]}"
    admin = pg_server.engine(isolation_level="AUTOCOMMIT")
    quoted = PASSWORD.replace("'", "''")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN PASSWORD '{quoted}' {options}")
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
        admin.dispose()


def as_role(url: URL, role: str) -> URL:
    return url.set(username=role, password=PASSWORD)


def test_revision_uses_database_url_server_when_set(
    workspace: Workspace, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to die with AttributeError: 'Namespace' object has no attribute 'live'."""
    monkeypatch.setenv("DATABASE_URL", workspace.scratch_url)
    workspace.edit("products", "interest_rate: 4.74", "interest_rate: 4.49")
    result = workspace.refdata("revision", "-m", "tracker cut", scratch=False)
    assert result.code == 0, result.err
    assert len(workspace.new_revision_files()) == 1


def make_two_heads(workspace: Workspace) -> list[str]:
    config = workspace.config()
    parent = ScriptDirectory.from_config(config).get_current_head()
    command.revision(config, message="branch one")
    command.revision(config, message="branch two", head=parent, splice=True)
    assert workspace.refdata("lock").code == 0
    return sorted(ScriptDirectory.from_config(config).get_heads())


def test_two_heads_are_one_line_for_revision_and_check_says_what_to_run(
    workspace: Workspace,
) -> None:
    heads = make_two_heads(workspace)
    result = workspace.refdata("revision", "-m", "on which head?")
    assert result.code == 2
    line = one_line(result.err)
    assert f"has 2 heads: {heads[0]} (" in line and f"{heads[1]} (" in line
    assert line.endswith(
        "Run `refdata.py merge -m MSG` (it refuses heads that change the same reference rows;"
        " `refdata.py check` lists them)"
    )
    result = workspace.refdata("check")
    assert result.code == 1 and result.out.endswith("run `refdata.py merge -m MSG`\n")

    # Doing what it says works (test_refdata_history.py checks the merged result further).
    assert workspace.refdata("merge", "-m", "merge").code == 0
    assert len(ScriptDirectory.from_config(workspace.config()).get_heads()) == 1
    assert check_lock(workspace.root / "alembic").problems() == []


BAD_CONFIGS = {
    "missing": (lambda root: root / "nope.ini", "nope.ini: no such file"),
    "a directory": (lambda root: root / "alembic", "is a directory: give the alembic.ini file"),
    "not an ini": (
        lambda root: root / "reference" / "faqs.yaml",
        "is not a readable alembic.ini (File contains no section headers.)",
    ),
    "no script_location": (
        lambda root: _write(root / "other.ini", "[alembic]\nsqlalchemy.url = x\n"),
        "has no script_location in [alembic]",
    ),
    "script_location elsewhere": (
        lambda root: _write(root / "other.ini", "[alembic]\nscript_location = /nowhere\n"),
        "cannot read the revisions: Path doesn't exist: /nowhere",
    ),
    "not UTF-8": (
        lambda root: _write(root / "other.ini", "[alembic]\nscript_location = \udcff\n"),
        "is not a readable alembic.ini",
    ),
}


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_a_bad_config_is_one_line(files_workspace: Workspace, case: str) -> None:
    make_path, message = BAD_CONFIGS[case]
    path = make_path(files_workspace.root)
    for args in (["check"], ["revision", "-m", "x"], ["lock"]):
        result = files_workspace.refdata("--config", str(path), *args)
        assert result.code == 2
        assert message in one_line(result.err)


@pytest.mark.parametrize("message", ["", "   ", "two\nlines", "a\ttab"])
def test_a_revision_message_must_be_one_line_of_text(
    files_workspace: Workspace, message: str
) -> None:
    result = files_workspace.refdata("revision", "-m", message)
    assert result.code == 2
    assert "-m " in one_line(result.err)
    assert files_workspace.untouched()


def test_a_broken_revision_file_is_named(files_workspace: Workspace) -> None:
    broken = files_workspace.versions / "2026_12_01_000000_0000deadbeef_broken.py"
    broken.write_text('"""broken"""\nrevision = "0000deadbeef"\ndown_revision = (\n')
    result = files_workspace.refdata("check")
    assert result.code == 2
    assert f"{broken}:" in one_line(result.err) and "not valid Python" in result.err


SCRATCH_ROLES = {
    "without CREATEDB": ("", "permission denied to create database: the role needs CREATEDB"),
    "on a read-only server": (
        "CREATEDB",
        "cannot execute CREATE DATABASE in a read-only transaction: the database is read-only",
    ),
}


@pytest.mark.parametrize("case", SCRATCH_ROLES, ids=list(SCRATCH_ROLES))
@pytest.mark.parametrize("password_in", ["userinfo", "query"])
def test_an_unusable_scratch_role_is_one_line_without_its_password(
    workspace: Workspace, pg_server: PgServer, case: str, password_in: str
) -> None:
    options, message = SCRATCH_ROLES[case]
    with login_role(pg_server, options) as role:
        if case == "on a read-only server":
            with pg_server.engine(isolation_level="AUTOCOMMIT").connect() as conn:
                conn.exec_driver_sql(f"ALTER ROLE {role} SET default_transaction_read_only = on")
        url = as_role(pg_server.admin_url, role)
        if password_in == "query":
            url = url.set(password=None).update_query_dict({"password": PASSWORD})
        workspace.scratch_url = url.render_as_string(hide_password=False)
        for args in (["check"], ["revision", "-m", "x"]):
            result = workspace.refdata(*args)
            assert result.code == 2
            line = one_line(result.err)
            assert "cannot create a scratch database on postgresql://" in line
            assert message in line
            assert PASSWORD not in result.err + result.out and "w0rd" not in line
    assert workspace.untouched()


def test_check_live_without_select_on_alembic_version_is_one_line(
    workspace: Workspace,
    pg_server: PgServer,
    head_engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with login_role(pg_server) as role:
        with head_engine.begin() as conn:
            conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
            conn.exec_driver_sql(f"REVOKE SELECT ON alembic_version FROM {role}")
        try:
            url = as_role(head_engine.url, role)
            aim_database_url(monkeypatch, url)
            result = workspace.refdata("check", "--live")
        finally:
            with head_engine.begin() as conn:
                conn.exec_driver_sql(f"DROP OWNED BY {role}")
    assert result.code == 2
    line = one_line(result.err)
    assert "permission denied for table alembic_version: the role lacks a privilege" in line
    assert PASSWORD not in result.err


def test_check_live_names_a_column_dropped_out_of_band_and_compares_the_rest(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with head_engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE faqs DROP COLUMN category")
        conn.exec_driver_sql("UPDATE products SET is_active = false WHERE code = 'personal_loan'")
    aim_database_url(monkeypatch, head_engine)
    result = workspace.refdata("check", "--live")
    assert result.code == 1, result.err
    assert (
        "lacks what head has (changed outside the migrations): faqs has no column category"
        in result.out
    )
    assert "  ~ personal_loan\n      is_active: True -> False" in result.out


def test_check_live_on_a_revision_this_checkout_lacks_is_one_line(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with head_engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0123456789ab'")
    aim_database_url(monkeypatch, head_engine)
    result = workspace.refdata("check", "--live")
    assert result.code == 2
    assert "is at revision 0123456789ab, which this checkout does not have" in one_line(result.err)


def test_check_live_waits_briefly_for_a_lock_then_says_so(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "LOCK_TIMEOUT", "200ms")
    aim_database_url(monkeypatch, head_engine)
    with head_engine.connect() as holder:
        holder.exec_driver_sql("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        result = workspace.refdata("check", "--live")
        assert_within(started, 15, "check --live behind a lock, with a 200 ms lock_timeout")
        holder.rollback()
    assert result.code == 2
    assert "another session holds a lock" in one_line(result.err)


def test_check_live_on_an_unreachable_database_is_one_line(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = quote(PASSWORD, safe="")
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE.replace("nobody@", f"nobody:{secret}@"))
    result = workspace.refdata("check", "--live")
    assert result.code == 2
    line = one_line(result.err)
    assert line.startswith("error: cannot check postgresql://nobody:***@127.0.0.1:1/none")
    assert "w0rd" not in result.err and secret not in result.err


def test_removing_a_row_in_use_is_named_early_and_the_upgrade_says_upgrade(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with head_engine.begin() as conn:
        customer = insert_customer(conn, "CUST-000010")
        insert_account(conn, customer, "50000001", "tracker_mortgage", "mortgage")
        insert_account(conn, customer, "50000002", "tracker_mortgage", "mortgage")
        account_ids = conn.execute(sa.text("SELECT id FROM accounts ORDER BY id")).scalars().all()
    products = workspace.reference / "products.yaml"
    text = products.read_text(encoding="utf-8")
    products.write_text(text[: text.index("- code: tracker_mortgage")].rstrip() + "\n")

    aim_database_url(monkeypatch, head_engine)
    result = workspace.refdata("check", "--live")
    assert result.code == 1
    assert (
        "the declared files remove products rows that postgresql://" in result.out
        and "still uses (2 row(s) in accounts.product_code reference tracker_mortgage "
        f"(id {account_ids[0]}, {account_ids[1]})): a revision deleting them would stop during "
        "the upgrade. Keep them declared and retire them (is_active: false) instead"
        in result.out
    )

    monkeypatch.delenv("DATABASE_URL")
    result = workspace.refdata("revision", "-m", "withdraw the tracker")
    assert result.code == 0
    assert "note: this revision deletes products tracker_mortgage" in result.out
    assert "retire them instead (is_active: false)" in result.out

    with head_engine.connect() as conn:
        before = snapshot_rows(conn)
    upgrade = run_alembic("-c", str(workspace.ini), "upgrade", "head", url=head_engine.url)
    said = upgrade.stdout + upgrade.stderr
    assert upgrade.returncode != 0
    assert (
        "FAILED: cannot upgrade: this revision would delete products rows that are still in use "
        "(2 row(s) in accounts.product_code reference tracker_mortgage)" in said
    )
    assert "Keep those rows: declare them again (retired with is_active: false" in said
    assert "roll forward" not in said
    with head_engine.connect() as conn:
        assert snapshot_rows(conn) == before, "the failed upgrade must change nothing"


def scratch_databases(pg_server: PgServer, prefix: str = SCRATCH_PREFIX) -> list[str]:
    """The databases on the server whose names start with ``prefix``."""
    admin = pg_server.engine()
    with admin.connect() as conn:
        query = sa.text("SELECT datname FROM pg_database WHERE starts_with(datname, :prefix)")
        names = list(conn.execute(query, {"prefix": prefix}).scalars())
    admin.dispose()
    return names


def slow_statement_pids(pg_server: PgServer) -> list[int]:
    """The sessions running the slow revision's ``pg_sleep`` in a scratch database."""
    # Autocommit: pg_stat_activity is a snapshot within a transaction.
    admin = pg_server.engine(isolation_level="AUTOCOMMIT")
    query = sa.text(
        "SELECT pid FROM pg_stat_activity WHERE starts_with(datname, :prefix) "
        "AND state = 'active' AND query LIKE '%pg_sleep%'"
    )
    with admin.connect() as conn:
        pids = list(conn.execute(query, {"prefix": SCRATCH_PREFIX}).scalars())
    admin.dispose()
    return pids


def check_stopped_mid_migration(
    workspace: Workspace, pg_server: PgServer, stop: Callable[[subprocess.Popen[str]], None]
) -> Result:
    """``refdata.py check`` as a process, stopped by ``stop`` while its scratch database
    is migrated (a revision sleeps there); the scratch database must be gone afterwards.

    The stop comes once the sleep is seen running, not once the scratch database is seen:
    on a loaded machine the database seen may be gone, and the command done, by the time
    the signal is sent (CI saw the check print OK)."""
    workspace.add_revision("slow", "SELECT pg_sleep(1.5)", "SELECT 1")
    assert scratch_databases(pg_server) == []
    with workspace.process("check") as process:
        deadline = time.monotonic() + 60
        while not slow_statement_pids(pg_server):
            assert process.poll() is None, "the command ended before the slow revision ran"
            assert time.monotonic() < deadline, "the slow revision never ran"
            time.sleep(0.02)
        stop(process)
        out, err = process.communicate(timeout=60)
    assert out == "", f"the command ran to its end though it was stopped: {err}"
    assert scratch_databases(pg_server) == [], "the scratch database was left behind"
    return Result(process.returncode, out, err)


def test_sigterm_during_check_drops_the_scratch_database(
    workspace: Workspace, pg_server: PgServer
) -> None:
    result = check_stopped_mid_migration(
        workspace, pg_server, lambda process: process.send_signal(signal.SIGTERM)
    )
    assert result.code == 128 + signal.SIGTERM
    assert one_line(result.err) == (
        "error: interrupted by SIGTERM; the scratch database (if any) was dropped and nothing "
        "was left half-written"
    )


# Seconds after Python's own start-up (importing site), which is out of the command's
# reach: from the script's first line on (tests/startup_support.py).
@pytest.mark.parametrize("after", [0.0, 0.15, 0.3, 0.6])
def test_ctrl_c_at_any_moment_from_start_up_is_one_line_and_leaves_no_scratch_database(
    workspace: Workspace, pg_server: PgServer, after: float
) -> None:
    """From the script's first line through imports to the scratch database being migrated."""
    workspace.add_revision("slow", "SELECT pg_sleep(1.5)", "SELECT 1")
    with workspace.process("check", python=IMPORT_TIMES) as process:
        stderr = Stderr(process)
        stderr.wait_for_start_up()
        time.sleep(after)
        process.send_signal(signal.SIGINT)
        out = process.stdout.read()
        process.wait(timeout=60)
        err = stderr.text()

    assert process.returncode == 128 + signal.SIGINT, f"{out}{err}"
    assert "Traceback" not in err, f"Ctrl-C {after} s after start-up: {err}"
    assert len(err.splitlines()) <= 1, err
    assert scratch_databases(pg_server) == [], "the scratch database was left behind"


def test_a_terminated_session_during_check_is_one_line(
    workspace: Workspace, pg_server: PgServer
) -> None:
    def terminate(_process: subprocess.Popen[str]) -> None:
        admin = pg_server.engine()
        with admin.connect() as conn:
            for pid in slow_statement_pids(pg_server):
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.dispose()

    result = check_stopped_mid_migration(workspace, pg_server, terminate)
    assert result.code == 2
    line = one_line(result.err)
    assert line.startswith("error: cannot migrate a scratch database to head: ")
    assert "run the command again" in line


def test_revision_without_ruff_installed_writes_a_formatted_file(
    workspace: Workspace, tmp_path: Path
) -> None:
    """After `pip install -e .` (no dev extras) there is no ruff: nothing may depend on it."""
    shadow = tmp_path / "no-ruff"
    (shadow / "ruff").mkdir(parents=True)
    (shadow / "ruff" / "__init__.py").write_text("raise ImportError('ruff is not installed')\n")
    workspace.edit("products", "interest_rate: 4.74", "interest_rate: 4.49")

    result = workspace.run(
        "revision",
        "-m",
        'rate "cut" \\ no ruff',
        env={"PYTHONPATH": str(shadow), "PATH": "/usr/bin:/bin"},
    )

    assert result.code == 0, result.err
    assert result.err == ""
    (generated,) = workspace.new_revision_files()
    assert_ruff_clean(generated)


def two_at_once(workspace: Workspace, command: str) -> str:
    """Two ``refdata.py COMMAND -m ...`` started together; both must exit 0. Their stdout."""
    first = workspace.process(command, "-m", "first")
    second = workspace.process(command, "-m", "second")
    results = [process.communicate(timeout=120) for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], results
    return "".join(out for out, _ in results)


def test_two_revision_runs_at_once_write_one_revision(workspace: Workspace) -> None:
    workspace.edit("products", "interest_rate: 4.74", "interest_rate: 4.49")

    outputs = two_at_once(workspace, "revision")

    assert outputs.count("wrote ") == 1 and outputs.count("nothing to change") == 1, outputs
    assert len(workspace.new_revision_files()) == 1
    assert workspace.refdata("check").code == 0
