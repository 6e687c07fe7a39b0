"""The revision history as the toolkit needs it: loaded without tracebacks, with one head.

Every command that reads the history goes through :func:`load_script` and
:func:`single_head`, so a broken revision file or a forked history is reported the same
way everywhere: one line saying what is wrong and what to run. :func:`merge_base` finds
where forked heads part.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError

from seed_data.refdata.errors import BadInput
from seed_data.refdata.files import shown


class MultipleHeads(BadInput):
    """The history forked: two revisions were made from the same parent."""

    def __init__(self, location: Path, heads: list[str], files: list[str]) -> None:
        listed = ", ".join(f"{head} ({name})" for head, name in zip(heads, files, strict=True))
        super().__init__(
            f"{shown(location / 'versions')} has {len(heads)} heads: {listed}; two branches each "
            "added a revision on the same parent. Run `refdata.py merge -m MSG` (it refuses "
            "heads that change the same reference rows; `refdata.py check` lists them)"
        )
        self.heads = heads


# Where load_script keeps what it loaded, on the config (one command's), with the state of
# the files it loaded: loading every revision file is the part of a command that grows
# with the history.
LOADED_SCRIPT = "refdata_loaded_script"


def load_script(config: Config, *, again: bool = False) -> ScriptDirectory:
    """The script directory, every revision file loaded (once per config; ``again``: once
    more if a revision file has changed since, as a writer that has just taken the lock
    must see what another wrote before it); BadInput naming what is broken."""
    if (loaded := config.attributes.get(LOADED_SCRIPT)) is not None:
        script, files = loaded
        if not again or _revision_files(Path(script.versions)) == files:
            return script
    try:
        script = ScriptDirectory.from_config(config)
        files = _revision_files(Path(script.versions))
        script.get_heads()  # loads every revision file, so a broken one fails here
    except (CommandError, RevisionError) as error:
        raise BadInput(f"cannot read the revisions: {' '.join(str(error).split())}") from None
    except SyntaxError as error:
        raise BadInput(f"{error.filename}:{error.lineno}: not valid Python: {error.msg}") from None
    except Exception as error:  # a revision file that fails on import, whatever it raises
        raise BadInput(
            f"cannot load the revision files in {config.get_main_option('script_location')}: "
            f"{type(error).__name__}: {error}"
        ) from None
    config.attributes[LOADED_SCRIPT] = (script, files)
    return script


def _revision_files(versions: Path) -> frozenset[tuple[str, int, int]]:
    """Name, modification time (ns) and size of each revision file: taken before the files
    are loaded, so that a change made during the load shows as a change afterwards."""
    try:
        stats = [(e.name, e.stat()) for e in os.scandir(versions) if e.name.endswith(".py")]
    except OSError:
        return frozenset()
    return frozenset((name, stat.st_mtime_ns, stat.st_size) for name, stat in stats)


def single_head(script: ScriptDirectory) -> str:
    """The one head revision; MultipleHeads (or BadInput for an empty history) otherwise."""
    heads = list(script.get_heads())
    if len(heads) == 1:
        return heads[0]
    if not heads:
        raise BadInput(f"{script.versions} has no revisions")
    files = [Path(script.get_revision(head).path).name for head in heads]  # type: ignore[union-attr]
    raise MultipleHeads(
        Path(script.dir), sorted(heads), [f for _, f in sorted(zip(heads, files, strict=True))]
    )


def lineage(script: ScriptDirectory, revision: str) -> set[str]:
    """``revision`` and every revision below it."""
    return {s.revision for s in script.walk_revisions("base", revision)}


def merge_base(script: ScriptDirectory, heads: list[str]) -> str:
    """The latest revision every head descends from (their common ancestor)."""
    lineages = {head: lineage(script, head) for head in heads}
    common = set.intersection(*lineages.values())
    below = {r: lineage(script, r) for r in common}
    bases = sorted(r for r in common if not any(o != r and r in below[o] for o in common))
    if len(bases) != 1:
        shared = "no revision" if not bases else f"{len(bases)} unrelated revisions"
        raise BadInput(
            f"the heads {', '.join(heads)} share {shared} as their latest common ancestor: "
            "merge them by hand (`alembic merge heads`), then `refdata.py lock`"
        )
    return bases[0]


def upgrade_path(script: ScriptDirectory, lower: str | None, upper: str) -> list[Script]:
    """The revisions above ``lower`` (None: from base) up to ``upper``, in upgrade order."""
    walked = list(script.walk_revisions(lower or "base", upper))[::-1]
    return [s for s in walked if s.revision != lower]


def ambiguous_downgrade(script: ScriptDirectory, current: tuple[str, ...]) -> str | None:
    """What to run instead of a relative downgrade (``-1``) from a merge revision, which
    alembic cannot walk ("Ambiguous walk"); None when the database is at no merge revision.

    Downgrading to either parent unapplies the merge revision alone and leaves every branch
    applied; ``alembic downgrade P@-n`` then takes the n revisions only P's branch has.
    """
    merges = [s for s in map(script.get_revision, current) if s is not None and s.is_merge_point]
    if not merges:
        return None
    merge = merges[0]
    parents = list(merge._normalized_down_revisions)
    lineages = {parent: lineage(script, parent) for parent in parents}
    own = {
        parent: lineages[parent] - set().union(*(lineages[p] for p in parents if p != parent))
        for parent in parents
    }
    keep = [
        f"to keep only {parent}, then "
        + " and ".join(
            f"`alembic downgrade {other}@-{len(own[other])}` (unapplies "
            f"{', '.join(r for r in _downward(script, other) if r in own[other])})"
            for other in parents
            if other != parent
        )
        for parent in parents
    ]
    return (
        f"a relative downgrade from the merge revision {merge.revision} is ambiguous: it merges "
        f"{', '.join(parents)}. To unapply the merge alone (every branch stays applied), run "
        f"`alembic downgrade {parents[0]}`; {'; '.join(keep)}"
    )


def _downward(script: ScriptDirectory, revision: str) -> list[str]:
    return [s.revision for s in script.walk_revisions("base", revision)]


def create_date(script: Script, *, precise: bool = False) -> str | None:
    """The ``Create Date:`` alembic wrote into the revision's docstring; to the second
    unless ``precise``."""
    found = re.search(r"^Create Date: (.*)$", script.longdoc or "", re.MULTILINE)
    if found is None:
        return None
    return found[1].strip() if precise else found[1].strip().split(".")[0]
