"""The revision lock: ``alembic/versions.sha256`` holds the SHA-256 of every revision file.

A revision that has been applied anywhere must never change: databases that ran the old
text would silently differ from those that run the new. ``refdata.py check`` fails when a
recorded file is edited or removed, or when a revision file is not recorded yet.

A generated revision that carries many rows keeps them in data files, in a directory named
like the revision file (``<stem>/<table>.added.jsonl``); each is recorded as well, as
``<stem>/<file>``.

The file is in ``sha256sum`` format (``<digest>  <name>``; ``<digest> *<name>``, the binary
mode marker, is read too), sorted by name, so ``sha256sum -c`` checks it as well (run from
``alembic/versions``). Two
branches that each add a revision both append a line at the end; ``.gitattributes`` merges
the file with git's ``union`` driver, which keeps both lines.

A released revision rewritten on purpose (README, "Revisions rewritten in place") keeps
the digest of each text it had before on an *earlier-text* line after its own:
``#earlier <digest>  <name>  <reason>``. Databases may have run those texts, so the
history checks (``check --live``, ``alembic`` before it runs anything) accept them as texts
of that file; ``sha256sum -c`` skips the line as a comment. Only ``lock --rehash FILE
--keep-earlier REASON`` writes one: re-recording an edited file without it keeps nothing,
so a database that ran the edited-away text is reported.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from seed_data.refdata.errors import BadInput
from seed_data.refdata.files import shown, write_atomically

LOCK_NAME = "versions.sha256"
LOCK_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>[^/\\]+\.py|[^/\\]+/[^/\\]+)")
EARLIER_PREFIX = "#earlier "
EARLIER_LINE = re.compile(
    r"#earlier (?P<digest>[0-9a-f]{64})  (?P<name>[^/\\\s]+\.py)  (?P<reason>\S.*)"
)


class LockError(BadInput):
    """The lock file itself is missing or unreadable: nothing can be checked against it."""


@dataclass
class LockStatus:
    lock_file: Path
    edited: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)  # data directories with no revision

    def problems(self) -> list[str]:
        """One line per problem, each saying how to proceed."""
        lock = self.lock_file
        return [
            *(
                f"{name} was edited after it was recorded in {lock}: "
                + (
                    restore_rows(lock.parent / "versions" / name)
                    if "/" in name
                    else "revert the edit (a released revision must never change; write a "
                    "new revision instead), or, if this revision has never been applied "
                    f"anywhere, record it again with `refdata.py lock --rehash {name}`"
                )
                for name in self.edited
            ),
            *(
                f"{name} is recorded in {lock} but missing: restore it (databases may be "
                "at that revision)"
                + (
                    f"; only if it was never released anywhere, un-record it with "
                    f"`refdata.py lock --forget {name}`"
                    if name.endswith(".py")
                    else ""
                )
                for name in self.removed
                if not (name.split("/")[0] + ".py" in self.removed and "/" in name)
            ),
            *(
                f"{name} is not recorded in {lock}: review it, then run `refdata.py lock`"
                for name in self.unrecorded
            ),
            *(
                f"{name}/ holds data files but there is no revision {name}.py: restore the "
                "revision, or delete the directory if its revision was deleted on purpose"
                for name in self.orphaned
            ),
        ]


def restore_rows(path: Path) -> str:
    """What to do about an edited data file: it cannot be re-recorded, only restored."""
    return (
        f"restore it (`git checkout -- {path}`): a revision's rows never change, and the "
        "revision checks them against digests frozen in it; make the change in a new revision"
    )


def versions_dir(script_location: Path) -> Path:
    return script_location / "versions"


def lock_file(script_location: Path) -> Path:
    return shown(script_location / LOCK_NAME)


def file_checksum(path: Path) -> str:
    """A revision file's SHA-256 as the lock records it (and ``migration_history`` too).
    Read in chunks: a data file can be tens of megabytes, and every deploy checks it."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def revision_files(script_location: Path) -> dict[str, Path]:
    """Every file the lock covers: ``<name>.py``, and ``<stem>/<file>`` for data files."""
    versions = versions_dir(script_location)
    files = {path.name: path for path in versions.glob("*.py")}
    for directory in versions.iterdir():
        if directory.is_dir() and not directory.name.startswith((".", "__")):
            files |= {
                f"{directory.name}/{path.name}": path
                for path in directory.iterdir()
                if path.is_file() and not path.name.startswith(".")
            }
    return dict(sorted(files.items()))


def data_files_of(name: str, names: list[str] | dict[str, str]) -> list[str]:
    """The data files (``<stem>/<file>``) of revision file ``name`` among ``names``."""
    prefix = name.removesuffix(".py") + "/"
    return [other for other in names if other.startswith(prefix)]


def checksums(script_location: Path) -> dict[str, str]:
    return {name: file_checksum(path) for name, path in revision_files(script_location).items()}


def read_lock(script_location: Path) -> dict[str, str]:
    """File name -> recorded digest; LockError if the lock is missing or malformed."""
    path = lock_file(script_location)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise LockError(
            f"{path} is missing: restore it (`git checkout -- {path}`), because it records "
            "which revisions were released; only for a new project, start one with "
            "`refdata.py lock --init`"
        ) from None
    except OSError as error:
        raise LockError(f"{path}: cannot read the lock file ({error.strerror})") from None
    except UnicodeDecodeError:
        raise LockError(f"{path}: not UTF-8 text: restore it from git") from None
    recorded: dict[str, str] = {}
    first_line: dict[str, int] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue  # comments, earlier-text lines included (read by read_earlier)
        match = LOCK_LINE.fullmatch(line.rstrip())
        if match is None:
            problems.append(
                f"{path}:{number}: not a checksum line (expected `<64 hex digits>  "
                "<revision file name>`, as sha256sum writes it): fix or delete the line"
            )
            continue
        name, digest = match["name"], match["digest"].lower()
        if name in recorded and recorded[name] != digest:
            problems.append(
                f"{path}:{number}: {name} is recorded twice with different checksums (also "
                f"on line {first_line[name]}): keep the line of the version that was released"
            )
        recorded.setdefault(name, digest)
        first_line.setdefault(name, number)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise LockError(problems[0] + more)
    return recorded


def read_earlier(script_location: Path) -> dict[str, dict[str, str]]:
    """File name -> {digest of an earlier text: why the file was rewritten}. Read after
    :func:`read_lock`, which has found the file readable."""
    path = lock_file(script_location)
    earlier: dict[str, dict[str, str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.startswith(EARLIER_PREFIX):
            continue
        match = EARLIER_LINE.fullmatch(line.rstrip())
        if match is None:
            raise LockError(
                f"{path}:{number}: not an earlier-text line (expected `#earlier <64 lowercase"
                " hex digits>  <revision file name>  <reason>`): fix the line"
            )
        earlier.setdefault(match["name"], {})[match["digest"]] = match["reason"]
    return earlier


def known_texts(script_location: Path) -> dict[str, set[str]]:
    """File name -> the digest of every text of it the lock knows: the recorded one, and
    the earlier texts of a revision rewritten on purpose."""
    known = {name: {digest} for name, digest in read_lock(script_location).items()}
    for name, digests in read_earlier(script_location).items():
        known.setdefault(name, set()).update(digests)
    return known


def check_lock(script_location: Path) -> LockStatus:
    recorded, actual = read_lock(script_location), checksums(script_location)
    directories = {name.split("/")[0] for name in actual if "/" in name}
    return LockStatus(
        lock_file(script_location),
        edited=sorted(n for n in recorded if n in actual and actual[n] != recorded[n]),
        removed=sorted(n for n in recorded if n not in actual),
        unrecorded=sorted(n for n in actual if n not in recorded),
        orphaned=sorted(d for d in directories if f"{d}.py" not in actual),
    )


def revision_file_name(given: str, script_location: Path) -> str:
    """A revision file's name from what a user typed: the name, or a path to the file."""
    versions = versions_dir(script_location)
    path = Path(given)
    if path.name != given and path.resolve().parent != versions.resolve():
        raise BadInput(f"{given} is not in {versions}: name a revision file there")
    if not (versions / path.name).is_file():
        raise BadInput(f"no revision file named {path.name} in {versions}")
    return path.name


def forgotten_file_name(given: str, script_location: Path) -> str:
    """A deleted revision's name from what a user typed, refused while the file exists."""
    name = Path(given).name
    if not name.endswith(".py"):
        raise BadInput(f"{given}: name the revision file (<name>.py) to forget")
    if (versions_dir(script_location) / name).exists():
        raise BadInput(
            f"{name} still exists: `lock --forget` only un-records a revision that was "
            f"deleted; delete it first (git rm), if no database has run it"
        )
    return name


def record(
    script_location: Path,
    rehash: tuple[str, ...] = (),
    init: bool = False,
    forget: tuple[str, ...] = (),
    keep_earlier: str | None = None,
) -> list[str]:
    """Record unrecorded revision files (and re-record ``rehash``, with their data files;
    un-record the deleted revisions in ``forget``, with theirs); return a line per change.

    Edited files stay as recorded unless named in ``rehash``: re-recording must be a
    deliberate act, never a side effect. A missing lock file is an error unless ``init``
    asks for a new one (which refuses to replace an existing lock). ``keep_earlier`` (the
    reason a released file was rewritten) keeps each replaced digest as an earlier text.
    """
    if init:
        if lock_file(script_location).exists():
            raise LockError(f"{lock_file(script_location)} already exists: run `refdata.py lock`")
        recorded: dict[str, str] = {}
        earlier: dict[str, dict[str, str]] = {}
    else:
        recorded, earlier = read_lock(script_location), read_earlier(script_location)
    actual = checksums(script_location)
    names = {revision_file_name(given, script_location) for given in rehash}
    names |= {data for name in names for data in data_files_of(name, actual)}
    gone = [forgotten_file_name(given, script_location) for given in forget]
    for name in gone:
        if name not in recorded:
            raise BadInput(
                f"{name} is not recorded in {lock_file(script_location)}: nothing to forget"
            )
    forgotten = [n for name in gone for n in [name, *data_files_of(name, recorded)]]
    changed = [n for n in actual if n not in recorded or (n in names and recorded[n] != actual[n])]
    for name in changed:
        if keep_earlier is not None and name in recorded:
            earlier.setdefault(name, {})[recorded[name]] = keep_earlier
        recorded[name] = actual[name]
    for name in forgotten:
        recorded.pop(name, None)
        earlier.pop(name, None)
    lines = [
        f"{recorded[name]}  {name}\n"
        + "".join(
            f"{EARLIER_PREFIX}{d}  {name}  {why}\n" for d, why in earlier.get(name, {}).items()
        )
        for name in sorted(recorded)
    ]
    write_atomically(lock_file(script_location), "".join(lines))
    return [f"recorded {name}" for name in changed] + [f"forgot {name}" for name in forgotten]
