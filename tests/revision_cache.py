"""Revision files loaded once per content in a test process.

alembic runs every revision file of the history again, as a new module, for each command
(``ScriptDirectory``). The tests run alembic and the reference toolkit in-process many
hundreds of times per worker, on the repository and on workspace copies holding the same
files (tests/refdata_support.py). Loading them again was the largest part of what each new
revision added to the suite's time (bench/ci_cost.py): in a history grown by 100
revisions, about 1,340 loads of its 110 files in the test processes per suite run.

Here a revision file whose name and bytes were loaded before in this process gets the
module those bytes gave; a file whose bytes changed in any way is loaded again, as alembic
would. alembic still lists, resolves and builds its revision map from the files each time:
only running a module that is already known is saved. Loaded as alembic loads them:

* ``env.py``: running it runs the migrations;
* a file that names ``__file__``: it finds something beside itself (a revision whose rows
  live in a data directory next to it), so its module must be the one at its own path;
* a file that fails to load: nothing is kept, and alembic raises as it would.

The commands run as processes (by the tests and in production) load the files as alembic
does: the cache lives only in the test processes that install it (tests/conftest.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType

from alembic.util import pyfiles

_alembic_load_module_py = pyfiles.load_module_py
_loaded: dict[tuple[str, bytes], ModuleType] = {}


def load_module_py(module_id: str, path: str | Path) -> ModuleType:
    """``alembic.util.pyfiles.load_module_py``, with the modules of revision files kept."""
    path = Path(path)
    if path.suffix != ".py" or path.name == "env.py":
        return _alembic_load_module_py(module_id, path)
    source = path.read_bytes()
    if b"__file__" in source:
        return _alembic_load_module_py(module_id, path)
    key = (path.name, hashlib.sha256(source).digest())
    if key not in _loaded:
        _loaded[key] = _alembic_load_module_py(module_id, path)
    return _loaded[key]


def install() -> None:
    """Serve alembic's loads of revision files from the cache in this process."""
    pyfiles.load_module_py = load_module_py
