"""The test processes' cache of revision modules (tests/revision_cache.py) never serves a
module other than the one alembic would load."""

from __future__ import annotations

from pathlib import Path

from alembic.util import load_python_file


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_a_revision_file_whose_bytes_changed_is_loaded_again(tmp_path: Path) -> None:
    path = write(tmp_path, "0001_rate.py", "RATE = 1\n")
    assert load_python_file(tmp_path, path.name).RATE == 1
    # Another size: Python's own compiled file is checked by size and whole seconds only.
    path.write_text("RATE = 22\n")
    assert load_python_file(tmp_path, path.name).RATE == 22, (
        "the cache served a module for bytes the file no longer has: key it by content"
    )


def test_the_same_bytes_under_another_name_are_another_module(tmp_path: Path) -> None:
    first = write(tmp_path, "0001_a.py", "RATE = 1\n")
    second = write(tmp_path, "0002_b.py", "RATE = 1\n")
    assert load_python_file(tmp_path, first.name) is not load_python_file(tmp_path, second.name)


def test_the_same_bytes_at_another_path_share_one_module(tmp_path: Path) -> None:
    text = "RATE = 1\n"
    write(tmp_path / "one", "0001_rate.py", text)
    write(tmp_path / "two", "0001_rate.py", text)
    assert load_python_file(tmp_path / "one", "0001_rate.py") is load_python_file(
        tmp_path / "two", "0001_rate.py"
    ), "workspace copies of the repository's files should not run them again"


def test_env_py_and_a_file_that_names_its_own_path_are_run_on_every_load(tmp_path: Path) -> None:
    for directory in (tmp_path / "one", tmp_path / "two"):
        write(directory, "env.py", "RAN = True\n")
        write(directory, "0001_rows.py", "from pathlib import Path\nROWS = Path(__file__).parent\n")
    one, two = (load_python_file(tmp_path / d, "0001_rows.py").ROWS for d in ("one", "two"))
    assert (one, two) == (tmp_path / "one", tmp_path / "two"), (
        "a revision that finds data beside itself got another copy's module"
    )
    assert load_python_file(tmp_path / "one", "env.py") is not load_python_file(
        tmp_path / "one", "env.py"
    ), "env.py runs the migrations: it must run on every load"
