"""The one line a server error becomes never carries a secret, whatever the server said."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.util import CommandError

from tests.refdata_support import Workspace

SECRET = "s3cret-Pa55"


def test_a_server_message_quoting_the_password_is_printed_masked(
    workspace: Workspace, head_engine: sa.Engine
) -> None:
    # The server quotes the value it refused; here that value is the password (trust
    # authentication ignores it, so the connection itself works).
    workspace.add_revision("a setting", f"SELECT CAST('{SECRET}' AS integer)", "SELECT 1")
    engine = sa.create_engine(head_engine.url.set(password=SECRET), poolclass=sa.NullPool)
    try:
        with pytest.raises(CommandError) as raised:
            command.upgrade(workspace.config(engine), "head")
    finally:
        engine.dispose()

    said = str(raised.value)  # what `alembic` prints after "FAILED: "
    assert SECRET not in said, said
    assert 'invalid input syntax for type integer: "***"' in said, said
    assert len(said.splitlines()) == 1
