"""Frozen migrations: a checksum per revision file, in ``alembic/versions.sha256``.

An applied revision must never change: databases that ran the old text would silently
differ from ones that run the new. The lock file records every revision file's SHA-256
in ``sha256sum`` format (so ``cd alembic/versions && sha256sum -c ../versions.sha256``
checks it too); the test suite and ``refdata.py check`` fail when a recorded file is
edited or removed, or when a revision file is not recorded yet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

LOCK_NAME = "versions.sha256"


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
    return script_location / LOCK_NAME


def checksums(script_location: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(versions_dir(script_location).glob("*.py"))
    }


def read_lock(script_location: Path) -> dict[str, str]:
    path = lock_file(script_location)
    if not path.exists():
        return {}
    recorded = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            recorded[name.strip()] = digest
    return recorded


def check_lock(script_location: Path) -> LockStatus:
    recorded, actual = read_lock(script_location), checksums(script_location)
    return LockStatus(
        lock_file(script_location),
        edited=sorted(n for n in recorded if n in actual and actual[n] != recorded[n]),
        removed=sorted(n for n in recorded if n not in actual),
        unrecorded=sorted(n for n in actual if n not in recorded),
    )


def record(script_location: Path, rehash: tuple[str, ...] = ()) -> list[str]:
    """Record unrecorded revision files (and re-record ``rehash``); return what was written.

    Edited files stay as recorded unless named in ``rehash``: re-recording must be a
    deliberate act, never a side effect.
    """
    recorded, actual = read_lock(script_location), checksums(script_location)
    unknown = [name for name in rehash if name not in actual]
    if unknown:
        raise FileNotFoundError(f"no revision file named {', '.join(unknown)}")
    changed = [n for n in actual if n not in recorded or (n in rehash and recorded[n] != actual[n])]
    for name in changed:
        recorded[name] = actual[name]
    lines = [f"{recorded[name]}  {name}\n" for name in sorted(recorded)]
    lock_file(script_location).write_text("".join(lines), encoding="utf-8")
    return changed
