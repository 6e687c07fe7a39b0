"""The revision lock file: what it accepts, what it refuses, and how it merges in git.

None of this needs a database: the lock is read (and refused) before any is touched.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from seed_data.db import REPO_ROOT
from seed_data.refdata.lock import check_lock, read_lock
from tests.refdata_support import Workspace

LOCK = "alembic/versions.sha256"


def lines(workspace: Workspace) -> list[str]:
    return workspace.lock.read_text(encoding="utf-8").splitlines()


def test_a_missing_lock_file_is_said_as_such_and_never_silently_rebuilt(
    files_workspace: Workspace,
) -> None:
    original = files_workspace.lock.read_text(encoding="utf-8")
    files_workspace.lock.unlink()
    for args in (["check"], ["revision", "-m", "x"], ["lock"], ["lock", "--rehash", "x.py"]):
        result = files_workspace.refdata(*args)
        assert result.code == 2
        assert result.err == (
            f"error: {files_workspace.lock} is missing: restore it (`git checkout -- "
            f"{files_workspace.lock}`), because it records which revisions were released; "
            "only for a new project, start one with `refdata.py lock --init`\n"
        )
        assert not files_workspace.lock.exists(), "a missing lock must not be re-recorded"

    assert files_workspace.refdata("lock", "--init").code == 0
    # A new lock records today's files; earlier texts are history it cannot know.
    assert lines(files_workspace) == [
        line for line in original.splitlines() if not line.startswith("#")
    ]
    result = files_workspace.refdata("lock", "--init")
    assert result.code == 2 and "already exists" in result.err


MALFORMED = {
    "not a digest": ("xyz  2026_01_01_000000_abc_x.py", "not a checksum line"),
    "short digest": ("abc123  2026_01_01_000000_abc_x.py", "not a checksum line"),
    "a path, not a name": (f"{'0' * 64}  ../versions/x.py", "not a checksum line"),
    "one space only": (f"{'0' * 64} x.py", "not a checksum line"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_lock_line_is_refused_with_file_and_line(
    files_workspace: Workspace, case: str
) -> None:
    line, message = MALFORMED[case]
    with files_workspace.lock.open("a", encoding="utf-8") as lock:
        lock.write(line + "\n")
    number = len(lines(files_workspace))
    before = files_workspace.lock.read_text(encoding="utf-8")
    for args in (["check"], ["lock"]):
        result = files_workspace.refdata(*args)
        assert result.code == 2
        assert result.err.startswith(f"error: {files_workspace.lock}:{number}: {message}")
        assert result.err.count("\n") == 1
    assert files_workspace.lock.read_text(encoding="utf-8") == before


def test_a_file_recorded_twice_with_different_checksums_is_refused(
    files_workspace: Workspace,
) -> None:
    first = lines(files_workspace)[0]
    name = first.split()[1]
    with files_workspace.lock.open("a", encoding="utf-8") as lock:
        lock.write(f"{'f' * 64}  {name}\n")
    result = files_workspace.refdata("lock")
    assert result.code == 2
    assert f"{name} is recorded twice with different checksums (also on line 1)" in result.err


def test_binary_mode_lines_crlf_and_duplicates_are_accepted(files_workspace: Workspace) -> None:
    """``sha256sum -b`` writes ``<digest> *<name>``; a union merge may repeat a line."""
    original = lines(files_workspace)
    binary = [
        line if line.startswith("#") else f"{line.split()[0]} *{line.split()[1]}"
        for line in original
    ]
    files_workspace.lock.write_bytes(("\r\n".join([*binary, original[0]]) + "\r\n").encode())

    assert check_lock(files_workspace.root / "alembic").problems() == []
    assert read_lock(files_workspace.root / "alembic") == read_lock(REPO_ROOT / "alembic")
    result = files_workspace.refdata("lock")
    assert result.code == 0 and result.out == "nothing new to record\n"
    assert lines(files_workspace) == original, "lock rewrites the file in its normal form"


def test_rehash_takes_names_or_paths_but_only_of_revision_files(
    files_workspace: Workspace,
) -> None:
    outside = files_workspace.root / "elsewhere.py"
    outside.write_text("")
    result = files_workspace.refdata("lock", "--rehash", str(outside))
    assert result.code == 2 and "is not in" in result.err
    result = files_workspace.refdata("lock", "--rehash", "no_such_revision.py")
    assert result.code == 2 and "no revision file named no_such_revision.py" in result.err
    name = lines(files_workspace)[0].split()[1]
    result = files_workspace.refdata("lock", "--rehash", str(files_workspace.versions / name))
    assert result.code == 0 and result.out == "nothing new to record\n"


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_lock_files_of_two_branches_merge_cleanly_in_git(
    files_workspace: Workspace, tmp_path: Path
) -> None:
    """Two branches each record a new revision: git merges the lock with both lines."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO_ROOT / ".gitattributes", repo / ".gitattributes")
    (repo / "alembic").mkdir()
    shutil.copy(files_workspace.lock, repo / LOCK)
    assert git(repo, "init", "-q", "-b", "main").returncode == 0
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")

    def record(branch: str, name: str) -> str:
        git(repo, "checkout", "-q", "-b", branch, "main")
        line = f"{branch[0] * 64}  {name}"
        lock = repo / LOCK
        lock.write_text("".join(sorted([*lock.read_text().splitlines(True), line + "\n"])))
        git(repo, "commit", "-qam", branch)
        return line

    ours = record("aaa", "2027_01_01_000000_aaaaaaaaaaaa_first.py")
    theirs = record("bbb", "2027_01_01_000001_bbbbbbbbbbbb_second.py")
    git(repo, "checkout", "-q", "aaa")
    merged = git(repo, "merge", "--no-edit", "bbb")

    assert merged.returncode == 0, merged.stdout + merged.stderr
    text = (repo / LOCK).read_text()
    assert ours in text and theirs in text and "<<<<<<<" not in text
    assert git(repo, "status", "--porcelain").stdout == ""
