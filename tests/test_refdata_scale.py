"""Reference data at real sizes: changes of any size through the documented workflow.

A change of up to ``INLINE_ROWS`` rows is written into the revision's source; above that,
the rows go into JSON Lines files beside it, locked like the revision. Either way the
revision is proved, upgrades, downgrades and upgrades again row-exact, online and through
``--sql`` applied with psql, and nothing is limited by PostgreSQL's 100 function
arguments or 65,535 bind parameters.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import runpy
from collections.abc import Iterator
from pathlib import Path

import psycopg2.extensions
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects.postgresql import JSONB

from seed_data.lock_discipline import BlockerWatch
from seed_data.refdata import state
from seed_data.refdata.declared import load_declared
from seed_data.refdata.diff import diff_all
from seed_data.refdata.lock import file_checksum, read_lock
from seed_data.refdata.migration import INLINE_ROWS, Revision, plan, render
from seed_data.refdata.state import HEAD_COPY_PREFIX, read_rows
from seed_data.refdata.tables import RefColumn, RefTable, reference_tables
from tests.helpers import apply_with_psql, current_revision, run_alembic, snapshot_rows
from tests.refdata_support import Workspace, assert_ruff_clean, scratch_migrations
from tests.servers import PgServer
from tests.test_project_rules import ALLOWED_IMPORT_ROOTS, imported_roots
from tests.test_refdata import apply_generated_revision
from tests.test_refdata_failures import scratch_databases


def faq_rows(count: int, start: int = 0, answer: str = "Answer {n}.") -> str:
    """``count`` FAQ rows in YAML, numbered from ``start`` (sort orders above the file's)."""
    return "".join(
        f"\n- slug: bulk-{n:05d}\n  question: Question {n}?\n"
        f"  answer: {json.dumps(answer.format(n=n), ensure_ascii=False)}\n"
        f"  category: bulk\n  sort_order: {1000 + n}\n  is_active: true\n"
        for n in range(start, start + count)
    )


def add_faqs(workspace: Workspace, text: str) -> None:
    path = workspace.reference / "faqs.yaml"
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


def offline_script(workspace: Workspace, direction: str, span: str) -> Path:
    buffer = io.StringIO()
    config = Config(str(workspace.ini), output_buffer=buffer)
    getattr(command, direction)(config, span, sql=True)
    script = workspace.root / f"{direction}.sql"
    script.write_text(buffer.getvalue(), encoding="utf-8")
    return script


def assert_sql_script_matches_online(
    workspace: Workspace, pg_server: PgServer, online: sa.Engine, offline: sa.Engine
) -> None:
    """The new revision's ``--sql`` upgrade and downgrade, applied with psql, give the rows
    the online run gives (``online`` is at head, ``offline`` at the revision before)."""
    previous = previous_revision(workspace)
    with offline.connect() as conn:
        assert current_revision(conn) == previous, "the script is applied where it starts"
        before = snapshot_rows(conn, history=False)
    apply_with_psql(
        pg_server.bin_dir, offline, offline_script(workspace, "upgrade", f"{previous}:head")
    )
    with offline.connect() as conn, online.connect() as at_head:
        assert snapshot_rows(conn, history=False) == snapshot_rows(at_head, history=False)
    apply_with_psql(
        pg_server.bin_dir, offline, offline_script(workspace, "downgrade", f"head:{previous}")
    )
    with offline.connect() as conn:
        assert snapshot_rows(conn, history=False) == before


def previous_revision(workspace: Workspace) -> str:
    """The revision the workspace's head revises."""
    head = ScriptDirectory.from_config(workspace.config()).get_revision("head")
    assert head is not None and isinstance(head.down_revision, str)
    return head.down_revision


def test_a_change_of_98_rows_is_written_inline_and_rolls_back_with_alembic(
    workspace: Workspace, pg_server: PgServer, head_engine: sa.Engine
) -> None:
    # 98 keys: one more than the 97 the guard once took as separate function arguments.
    add_faqs(workspace, faq_rows(98))

    result = workspace.refdata("revision", "-m", "98 new FAQs")

    assert result.code == 0, result.err
    (generated,) = workspace.new_revision_files()
    assert not generated.with_suffix("").exists(), "up to INLINE_ROWS rows stay in the source"
    apply_generated_revision(workspace, head_engine)
    # The operator's rollback, through the real command.
    done = run_alembic("-c", str(workspace.ini), "downgrade", "-1", url=head_engine.url)
    assert done.returncode == 0, done.stderr
    with head_engine.connect() as conn:
        assert current_revision(conn) == previous_revision(workspace)
        assert conn.scalar(sa.text("SELECT count(*) FROM faqs WHERE slug LIKE 'bulk-%'")) == 0


def test_5000_rows_go_to_a_locked_data_file_and_round_trip_online_and_through_sql(
    workspace: Workspace, pg_server: PgServer, head_engine: sa.Engine, other_head_engine: sa.Engine
) -> None:
    special = 'It\'s "£{n}" \\ café\u00a0ok \N{GRINNING FACE}\nsecond line'
    add_faqs(workspace, faq_rows(5000, answer=special))

    result = workspace.refdata("revision", "-m", "5,000 new FAQs")

    assert result.code == 0, result.err
    assert "faqs: 5,000 to add, 0 to remove, 0 to change" in result.out
    assert "  ... and 4,980 more to add" in result.out, "the listing is capped"
    (generated,) = workspace.new_revision_files()
    data = generated.with_suffix("") / "faqs.added.csv"
    header, *rows = csv.reader(io.StringIO(data.read_text(encoding="utf-8"), newline=""))
    assert header == ["slug", "question", "answer", "category", "sort_order", "is_active"]
    assert len(rows) == 5000
    assert rows[1] == [
        "bulk-00001",
        "Question 1?",
        special.format(n=1),
        "bulk",
        "1001",
        "true",
    ]
    assert generated.stat().st_size < 10_000, "the rows are not in the source alembic imports"
    lock = read_lock(workspace.root / "alembic")
    assert lock[f"{generated.stem}/faqs.added.csv"] == file_checksum(data)
    assert lock[generated.name] == file_checksum(generated)
    assert imported_roots(generated) <= ALLOWED_IMPORT_ROOTS
    assert_ruff_clean(generated)

    apply_generated_revision(workspace, head_engine)
    command.upgrade(workspace.config(other_head_engine), previous_revision(workspace))
    assert_sql_script_matches_online(workspace, pg_server, head_engine, other_head_engine)
    assert workspace.refdata("check").code == 0


def test_commands_copy_head_from_a_kept_database_that_follows_the_history(
    workspace: Workspace, pg_server: PgServer
) -> None:
    """`check` and `revision` copy head from a database kept on the scratch server instead
    of replaying the history (which grows); a new revision makes a new one, and at most
    three are kept: the new head, the one it came from and the oldest on its history."""
    assert workspace.refdata("check").code == 0
    first = set(
        scratch_databases(pg_server, HEAD_COPY_PREFIX)
    )  # this history's head, and what other tests left
    assert first, "head's copy is kept"
    add_faqs(workspace, faq_rows(3))
    assert workspace.refdata("revision", "-m", "three FAQs").code == 0

    result = workspace.refdata("check")

    assert result.code == 0, f"a copy of the old head lacks the new rows: {result.out}"
    kept = set(scratch_databases(pg_server, HEAD_COPY_PREFIX))
    [new] = kept - first
    history = [f"{HEAD_COPY_PREFIX}{s}" for s in state.history_states(workspace.config(), "heads")]
    origin = history[-2]  # the head the new revision was written on
    oldest = next(name for name in history if name in first)
    assert kept == {new, origin, oldest}, (
        f"kept {kept}: the new head's copy, the one it came from and the oldest on its history"
    )
    add_faqs(workspace, faq_rows(2, start=3))
    assert workspace.refdata("revision", "-m", "two more FAQs").code == 0
    assert workspace.refdata("check").code == 0
    later = set(scratch_databases(pg_server, HEAD_COPY_PREFIX))
    [newer] = later - kept
    assert later == {newer, new, oldest}, f"kept beside the newest head: {later - {newer}}"
    add_faqs(workspace, faq_rows(1, start=5))
    assert workspace.refdata("revision", "-m", "one more FAQ").code == 0
    latest = set(scratch_databases(pg_server, HEAD_COPY_PREFIX))
    assert len(latest) == 3 and {newer, oldest} < latest, f"left behind: {latest}"


def test_a_replay_from_base_keeps_head_s_parent_beside_head(
    workspace: Workspace, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing kept on its history, a command replays it from base. It keeps head's
    parent as well as head: a history that differs only in its last revision (a test's
    or a teammate's revision written beside head, head edited) starts there, one revision
    from its own head, instead of replaying the whole history again."""
    for name in scratch_databases(pg_server, HEAD_COPY_PREFIX):
        pg_server.drop_database(name)
    script = ScriptDirectory.from_config(workspace.config())
    parent = script.get_revision(script.get_current_head()).down_revision
    migrated_to = scratch_migrations(monkeypatch)

    assert workspace.refdata("check").code == 0

    assert migrated_to == [parent, "head"], migrated_to
    states = state.history_states(workspace.config(), "heads")
    kept = set(scratch_databases(pg_server, HEAD_COPY_PREFIX))
    assert kept == {f"{HEAD_COPY_PREFIX}{s}" for s in states[-2:]}, (
        f"kept {kept}: after a replay from base, head's and its parent's states are kept"
    )
    assert workspace.refdata("check").code == 0
    assert migrated_to == [parent, "head"], "the next command at head copies head"


def test_copy_lifts_the_wait_callback_only_while_the_lock_watch_is_paused(
    workspace: Workspace, head_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg2's wait callback is process-wide, and env.py's lock watcher queries from
    another thread: a query of its in flight when COPY lifts the callback would fail and
    end the watch. So the watcher is paused around the lift, on env.py's own path."""
    add_faqs(workspace, faq_rows(INLINE_ROWS + 1))
    assert workspace.refdata("revision", "-m", "many FAQs").code == 0
    paused, lifts = [], []
    pause = BlockerWatch.paused

    @contextlib.contextmanager
    def recorded(watch: BlockerWatch) -> Iterator[None]:
        with pause(watch):
            paused.append(True)
            yield
            paused.pop()

    set_callback = psycopg2.extensions.set_wait_callback
    monkeypatch.setattr(BlockerWatch, "paused", recorded)
    monkeypatch.setattr(
        psycopg2.extensions,
        "set_wait_callback",
        lambda callback: (lifts.append((callback, bool(paused))), set_callback(callback))[1],
    )

    command.upgrade(workspace.config(head_engine), "head")  # env.py's path: the watch runs

    # The first and last are env.py's own (Ctrl-C cancels a statement), before the watch.
    lifted = [was_paused for callback, was_paused in lifts[1:-1] if callback is None]
    assert lifted == [True], f"COPY must lift the callback once, inside the pause: {lifts}"
    assert psycopg2.extensions.get_wait_callback() is None, "env.py must put it back"


def test_a_change_to_a_large_table_writes_files_proportional_to_it(
    workspace: Workspace, pg_server: PgServer, head_engine: sa.Engine, other_head_engine: sa.Engine
) -> None:
    add_faqs(workspace, faq_rows(5000))
    assert workspace.refdata("revision", "-m", "5,000 new FAQs").code == 0
    command.upgrade(workspace.config(head_engine), "head")
    path = workspace.reference / "faqs.yaml"
    text = path.read_text(encoding="utf-8")
    for n in range(0, 5000, 25):  # 200 answers change
        text = text.replace(f'"Answer {n}."', f'"Answer {n}, revised."')
    for n in range(1, 5000, 500):  # 10 rows go
        text = text.replace(faq_rows(1, n), "")
    path.write_text(text + faq_rows(10, 5000), encoding="utf-8")  # 10 rows come

    result = workspace.refdata("revision", "-m", "4% of the FAQs")

    assert result.code == 0, result.err
    assert "faqs: 10 to add, 10 to remove, 200 to change" in result.out
    generated = workspace.new_revision_files()[-1]
    assert_ruff_clean(generated)
    files = {p.name: p.read_text(encoding="utf-8") for p in generated.with_suffix("").iterdir()}
    assert {name: len(text.splitlines()) for name, text in files.items()} == {
        "faqs.added.csv": 11,  # the first line names the columns
        "faqs.removed.csv": 11,
        "faqs.changed.jsonl": 200,
    }
    # Only the changed field travels, with its value on each side.
    assert json.loads(files["faqs.changed.jsonl"].splitlines()[0]) == {
        "key": "bulk-00000",
        "before": {"answer": "Answer 0."},
        "after": {"answer": "Answer 0, revised."},
    }
    apply_generated_revision(workspace, head_engine)
    command.upgrade(workspace.config(other_head_engine), previous_revision(workspace))
    assert_sql_script_matches_online(workspace, pg_server, head_engine, other_head_engine)


def test_inline_and_data_file_forms_meet_at_the_threshold(files_workspace: Workspace) -> None:
    tables = reference_tables()
    head = load_declared(files_workspace.reference)
    revision = Revision("aaaaaaaaaaaa", "bbbbbbbbbbbb", "2027-01-01 00:00:00", "threshold")
    faq = head["faqs"]["mobile-app"]
    for count, files in ((INLINE_ROWS, False), (INLINE_ROWS + 1, True)):
        new = {f"bulk-{n}": {**faq, "slug": f"bulk-{n}", "sort_order": n} for n in range(count)}
        wanted = {**head, "faqs": {**head["faqs"], **new}}
        rendered = render(revision, plan(diff_all(tables, head, wanted), head, wanted), "x")
        assert bool(rendered.data) is files, f"{count} rows"
        assert ("faqs.added.csv" in rendered.source) is files


def test_an_edited_data_file_is_refused_before_the_revision_changes_anything(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    add_faqs(workspace, faq_rows(INLINE_ROWS + 1))
    assert workspace.refdata("revision", "-m", "many FAQs").code == 0
    (generated,) = workspace.new_revision_files()
    data = generated.with_suffix("") / "faqs.added.csv"
    data.write_text(data.read_text().replace("Answer 7.", "Answer 7, edited."))
    with head_engine.connect() as conn:
        before = snapshot_rows(conn)

    # The deploy's validation refuses it first; overridden, the revision's own check does.
    refusals = {
        (): f"FAILED: {data} differs from its line in {workspace.lock} (edited after it was "
        f"locked): restore it (`git checkout -- {data}`): a revision's rows never change",
        ("-x", "override=testing the last line of defence"): (
            f"FAILED: {data} is not the file this revision was written with (its SHA-256 "
            "differs): restore it from git"
        ),
    }
    for options, refusal in refusals.items():
        done = run_alembic(
            "-c", str(workspace.ini), *options, "upgrade", "head", url=head_engine.url
        )

        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert one_line(done.stdout).startswith(refusal), done.stdout
        with head_engine.connect() as conn:
            assert snapshot_rows(conn) == before, "nothing may change"
    result = workspace.refdata("check")
    assert result.code == 1
    assert (
        f"{generated.stem}/faqs.added.csv was edited after it was recorded in "
        f"{workspace.lock}: restore it (`git checkout -- {data}`)" in result.out
    ), result.out


def test_a_downgrade_blocked_by_thousands_of_rows_in_use_is_one_short_line(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    products = "".join(
        f"\n- code: bulk_{n:03d}\n  name: Bulk product {n}\n  account_type_code: savings\n"
        f"  description: For tests.\n  interest_rate: 1.00\n  features: []\n"
        f"  requirements: []\n  is_active: true\n"
        for n in range(150)
    )
    path = workspace.reference / "products.yaml"
    path.write_text(path.read_text(encoding="utf-8") + products, encoding="utf-8")
    assert workspace.refdata("revision", "-m", "150 products").code == 0
    command.upgrade(workspace.config(head_engine), "head")
    with head_engine.begin() as conn:
        conn.execute(
            sa.text("""
                INSERT INTO customers (customer_id, first_name, last_name, email, phone,
                                       date_of_birth, password_hash)
                VALUES ('C1', 'Ada', 'Jones', 'ada@example.co.uk', '07700 900000',
                        '1985-04-12', 'x')
            """)
        )
        conn.execute(
            sa.text("""
                INSERT INTO accounts (account_number, customer_id, product_code,
                                      account_type_code, status_code)
                SELECT 'A' || n, (SELECT id FROM customers), 'bulk_' || lpad(n::text, 3, '0'),
                       'savings', 'active'
                FROM generate_series(0, 119) AS n
            """)
        )
        before = snapshot_rows(conn)

    done = run_alembic("-c", str(workspace.ini), "downgrade", "-1", url=head_engine.url)

    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    said = done.stdout
    assert (
        "cannot downgrade: this revision would delete products rows that are still in use "
        "(120 row(s) in accounts.product_code reference bulk_000, bulk_001," in said
    )
    assert "bulk_009 and 110 more)" in said and len(said) < 1000, said
    with head_engine.connect() as conn:
        assert snapshot_rows(conn) == before


def test_log_follows_a_row_through_data_file_revisions(workspace: Workspace) -> None:
    add_faqs(workspace, faq_rows(INLINE_ROWS + 1))
    assert workspace.refdata("revision", "-m", "many FAQs").code == 0
    workspace.edit("faqs", '"Answer 5."', '"Answer 5, revised."')
    assert workspace.refdata("revision", "-m", "FAQ 5 revised").code == 0
    first, second = (p.name.split("_")[4] for p in workspace.new_revision_files())

    result = workspace.refdata("log", "faqs", "bulk-00005")

    assert result.code == 0, result.err
    assert result.out.startswith("faqs bulk-00005: 2 revision(s) changed it")
    assert f"\n{first}  " in result.out and f"\n{second}  " in result.out
    assert "  answer: 'Answer 5.' -> 'Answer 5, revised.'" in result.out


def test_rules_only_the_database_knows_name_each_refused_row_among_thousands(
    workspace: Workspace,
) -> None:
    workspace.add_revision(
        "faq sort orders below 5000",
        "ALTER TABLE faqs ADD CONSTRAINT ck_faqs_sort_order_small CHECK (sort_order < 5000)",
        "ALTER TABLE faqs DROP CONSTRAINT ck_faqs_sort_order_small",
    )
    add_faqs(workspace, faq_rows(4003))  # sort orders 1000 to 5002: the last three break it
    lines = (workspace.reference / "faqs.yaml").read_text(encoding="utf-8").splitlines()

    result = workspace.refdata("check")

    assert result.code == 2
    refused = [line for line in result.err.splitlines() if "ck_faqs_sort_order_small" in line]
    expected = [
        f"  {workspace.reference}/faqs.yaml:{lines.index(f'  sort_order: {n}') + 1}: "
        f"sort_order {n} breaks ck_faqs_sort_order_small: CHECK ((sort_order < 5000))"
        for n in (5000, 5001, 5002)
    ]
    assert refused == expected, result.err


@pytest.mark.parametrize("rows", [10, 98, 5000], ids=["10", "98", "5000"])
def test_removing_rows_deletes_them_with_the_guard_and_restores_them_on_downgrade(
    workspace: Workspace, head_engine: sa.Engine, rows: int
) -> None:
    add_faqs(workspace, faq_rows(rows))
    assert workspace.refdata("revision", "-m", "add them").code == 0
    command.upgrade(workspace.config(head_engine), "head")
    (workspace.reference / "faqs.yaml").write_text(
        (Path(__file__).parent.parent / "seed_data/reference/faqs.yaml").read_text(),
        encoding="utf-8",
    )

    result = workspace.refdata("revision", "-m", "remove them")

    assert result.code == 0, result.err
    assert "note: this revision deletes" not in result.out, "nothing refers to FAQs"
    apply_generated_revision(workspace, head_engine)
    with head_engine.connect() as conn:
        assert read_rows(conn, reference_tables()) == load_declared(workspace.reference)


def test_a_key_a_reader_could_misread_is_shown_escaped(workspace: Workspace) -> None:
    workspace.edit("faqs", "- slug: mobile-app", "- slug: mobile\u00a0app")

    result = workspace.refdata("check")

    assert result.code == 1
    assert "  + 'mobile\\xa0app': question=" in result.out, result.out
    assert "  - mobile-app\n" in result.out


def test_data_files_keep_nulls_empty_texts_and_empty_lists_apart(
    head_engine: sa.Engine, tmp_path: Path
) -> None:
    """A table the repository does not have (a nullable list column, nullable text): the
    data-file form's statements give back exactly the rows it was written from."""
    table = RefTable(
        "bulk_things",
        "code",
        (
            RefColumn("code", sa.String(20), False, None),
            RefColumn("tags", JSONB(), True, None),
            RefColumn("note", sa.Text(), True, None),
        ),
    )
    values = [(None, None), ([], ""), (["a", "b"], "x"), (['it\'s "q"'], "\N{NO-BREAK SPACE}")]
    rows = {
        f"thing-{n:03d}": {"code": f"thing-{n:03d}", "tags": tags, "note": note}
        for n, (tags, note) in ((n, values[n % len(values)]) for n in range(INLINE_ROWS + 1))
    }
    plans = plan(diff_all((table,), {}, {table.name: rows}), {table.name: {}}, {table.name: rows})
    revision = Revision("aaaaaaaaaaaa", "bbbbbbbbbbbb", "2027-01-01 00:00:00", "things")
    rendered = render(revision, plans, "things")
    (tmp_path / "things").mkdir()
    for name, text in rendered.data.items():
        (tmp_path / "things" / name).write_text(text, encoding="utf-8")
    source = tmp_path / "things.py"
    source.write_text(rendered.source, encoding="utf-8")
    module = runpy.run_path(str(source))
    with head_engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE bulk_things (code varchar(20) PRIMARY KEY, tags jsonb, note text)"
        )
        with Operations.context(MigrationContext.configure(conn)):
            module["upgrade"]()
            read = conn.execute(sa.text("SELECT code, tags, note FROM bulk_things ORDER BY 1"))
            assert {r.code: {"code": r.code, "tags": r.tags, "note": r.note} for r in read} == rows
            # psycopg2 reads JSON null as None too: ask the database which are SQL NULL.
            nulls = conn.scalar(sa.text("SELECT count(*) FROM bulk_things WHERE tags IS NULL"))
            assert nulls == sum(row["tags"] is None for row in rows.values())
            module["downgrade"]()
            assert conn.scalar(sa.text("SELECT count(*) FROM bulk_things")) == 0
