"""The message sequence-number revision backfills existing rows, and undoes cleanly."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from tests.helpers import config_for, snapshot_rows
from tests.live_support import BEFORE_IT, SEQUENCE_NUMBERS

# Two conversations; the second one's messages were inserted out of order and two of them
# share a timestamp, so numbering must follow (sent_at, id), not insertion order alone.
BUSINESS_ROWS = """
INSERT INTO customers (id, customer_id, first_name, last_name, email, phone, date_of_birth,
                       password_hash)
OVERRIDING SYSTEM VALUE
VALUES (1, 'CUST-000001', 'Ada', 'Jones', 'ada@example.co.uk', '07700 900001', '1985-04-12', 'x');
INSERT INTO conversations (id, customer_id, channel_code, intent, started_at)
OVERRIDING SYSTEM VALUE
VALUES (10, 1, 'web_chat', 'balance_enquiry', '2026-03-01 09:00+00'),
       (11, 1, 'phone', 'card_lost', '2026-03-02 10:00+00');
INSERT INTO messages (id, conversation_id, role_code, content, sent_at)
OVERRIDING SYSTEM VALUE
VALUES (100, 10, 'customer', 'What is my balance?', '2026-03-01 09:00:05+00'),
       (101, 10, 'agent', 'Your balance is £1,204.50.', '2026-03-01 09:00:09+00'),
       (104, 11, 'agent', 'I have frozen the card.', '2026-03-02 10:01:00+00'),
       (102, 11, 'customer', 'I lost my card.', '2026-03-02 10:00:30+00'),
       (103, 11, 'system', 'Card frozen.', '2026-03-02 10:01:00+00');
"""


# One conversation per batch (several commits), and all of them in one.
@pytest.mark.parametrize("batch_size", [1, 1000])
def test_sequence_numbers_are_backfilled_in_display_order(
    engine: sa.Engine, batch_size: int
) -> None:
    config = config_for(engine, batch_size=batch_size)
    command.upgrade(config, BEFORE_IT)
    with engine.begin() as conn:
        conn.execute(sa.text(BUSINESS_ROWS))
    with engine.connect() as conn:
        before = snapshot_rows(conn)

    command.upgrade(config, SEQUENCE_NUMBERS)
    with engine.connect() as conn:
        numbered = conn.execute(
            sa.text("SELECT id, conversation_id, sequence_no FROM messages ORDER BY id")
        ).all()
    assert [tuple(row) for row in numbered] == [
        (100, 10, 1),
        (101, 10, 2),
        (102, 11, 1),
        (103, 11, 2),
        (104, 11, 3),
    ]

    command.downgrade(config, BEFORE_IT)
    with engine.connect() as conn:
        assert snapshot_rows(conn) == before, "the downgrade lost or changed business rows"
