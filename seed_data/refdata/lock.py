"""The revision lock: ``alembic/versions.sha256`` holds the SHA-256 of every revision file.

A revision that has been applied anywhere must never change: databases that ran the old
text would silently differ from those that run the new. ``refdata.py check`` fails when a
recorded file is edited or removed, or when a revision file is not recorded yet.

The file is in ``sha256sum`` format (``<digest>  <name>``; ``<digest> *<name>``, the binary
mode marker, is read too), sorted by name, so ``sha256sum -c`` checks it as well. Two
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
LOCK_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>[^/\\]+\.py)")
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

    def problems(self) -> list[str]:
        """One line per problem, each saying how to proceed."""
        lock = self.lock_file
        return [
            *(
                f"{name} was edited after it was recorded in {lock}: revert the edit (a "
                "released revision must never change; write a new revision instead), or, "
                "if this revision has never been applied anywhere, record it again with "
                f"`refdata.py lock --rehash {name}`"
                for name in self.edited
            ),
            *(
                f"{name} is recorded in {lock} but missing: restore it (databases may be "
                "at that revision)"
                for name in self.removed
            ),
            *(
                f"{name} is not recorded in {lock}: review it, then run `refdata.py lock`"
                for name in self.unrecorded
            ),
        ]


def versions_dir(script_location: Path) -> Path:
    return script_location / "versions"


def lock_file(script_location: Path) -> Path:
    return shown(script_location / LOCK_NAME)


def file_checksum(path: Path) -> str:
    """A revision file's SHA-256 as the lock records it (and ``migration_history`` too)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checksums(script_location: Path) -> dict[str, str]:
    return {
        path.name: file_checksum(path)
        for path in sorted(versions_dir(script_location).glob("*.py"))
    }


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
    return LockStatus(
        lock_file(script_location),
        edited=sorted(n for n in recorded if n in actual and actual[n] != recorded[n]),
        removed=sorted(n for n in recorded if n not in actual),
        unrecorded=sorted(n for n in actual if n not in recorded),
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


def record(
    script_location: Path,
    rehash: tuple[str, ...] = (),
    init: bool = False,
    keep_earlier: str | None = None,
) -> list[str]:
    """Record unrecorded revision files (and re-record ``rehash``); return what was written.

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
    names = {revision_file_name(given, script_location) for given in rehash}
    actual = checksums(script_location)
    changed = [n for n in actual if n not in recorded or (n in names and recorded[n] != actual[n])]
    for name in changed:
        if keep_earlier is not None and name in recorded:
            earlier.setdefault(name, {})[recorded[name]] = keep_earlier
        recorded[name] = actual[name]
    lines = [
        f"{recorded[name]}  {name}\n"
        + "".join(
            f"{EARLIER_PREFIX}{d}  {name}  {why}\n" for d, why in earlier.get(name, {}).items()
        )
        for name in sorted(recorded)
    ]
    write_atomically(lock_file(script_location), "".join(lines))
    return changed
