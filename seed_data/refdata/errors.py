"""How the toolkit refuses: one line that says what is wrong and what to do."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL

from seed_data.db_errors import classify, first_line


class BadInput(Exception):
    """Bad input or an unusable database: exit status 2, one line on stderr."""


def database_refusal(doing: str, error: sa.exc.DBAPIError, url: URL | None) -> BadInput:
    """``doing``, then what the server said and, for a known cause, what to do about it."""
    failure = classify(error, url)
    return BadInput(f"{doing}: {failure.message if failure else first_line(error, url)}")
