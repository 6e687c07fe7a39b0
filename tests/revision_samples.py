"""Revisions the gates must stop, written as a developer might write them."""

from __future__ import annotations

# ADD COLUMN and the backfill of every row in one transaction: the ACCESS EXCLUSIVE lock the
# ALTER takes is held while every transaction row is updated. squawk sees nothing wrong
# with the UPDATE; app queries on transactions wait for the whole of it.
FILL_IN_THE_SAME_TRANSACTION = (
    "ALTER TABLE transactions ADD COLUMN amount_pence bigint",
    "UPDATE transactions SET amount_pence = round(amount * 100)",
)
UNDO_FILL = ("ALTER TABLE transactions DROP COLUMN amount_pence",)
