"""The revision history as the toolkit needs it: loaded without tracebacks, with one head.

Every command that reads the history goes through :func:`load_script` and
:func:`single_head`, so a broken revision file or a forked history is reported the same
way everywhere: one line saying what is wrong and what to run.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
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
            'added a revision on the same parent. Run `alembic merge heads -m "merge"`, '
            "then `refdata.py lock`"
        )
        self.heads = heads


def load_script(config: Config) -> ScriptDirectory:
    """The script directory, every revision file loaded; BadInput naming what is broken."""
    try:
        script = ScriptDirectory.from_config(config)
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
    return script


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
