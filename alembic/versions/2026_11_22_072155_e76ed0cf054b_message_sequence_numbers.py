"""message sequence numbers: explicit message order within a conversation, backfilled

Revision ID: e76ed0cf054b
Revises: 96913cafe93c
Create Date: 2026-11-22 07:21:55.281772

Messages were ordered by ``sent_at``, which ties when a customer message and the agent's
automated reply land in the same instant. ``sequence_no`` (1, 2, 3 ... per conversation)
makes the order explicit. Existing rows are numbered by ``(sent_at, id)``, which is the
order the app showed them in, so the downgrade can drop the column without losing anything
the upgrade cannot rebuild.

It runs while the previous release serves customers (expand/contract; see
docs/schema-revisions.md), so no step holds a lock app queries wait for longer than a
moment:

1. a nullable column, and a trigger numbering the inserts of writers that leave
   ``sequence_no`` out (the previous release), in one short transaction;
2. the backfill, a batch of conversations per transaction, resumable after a kill;
3. ``CREATE UNIQUE INDEX CONCURRENTLY``; ``CHECK (sequence_no IS NOT NULL) NOT VALID``,
   ``VALIDATE``, then ``SET NOT NULL`` (the valid check spares it a scan) and the unique
   constraint ``USING INDEX``;
4. ``DROP INDEX CONCURRENTLY`` of the index the unique one makes redundant.

Online, each step looks at the catalog first, so the next ``alembic upgrade head`` finishes
a run interrupted anywhere (a kill, a lock timeout, an INVALID index left by a cancelled
build). A ``--sql`` script does the same as psql runs it: the steps a rerun would find done
(the constraints, an INVALID index to drop first) check the catalog in a ``DO`` block, so a
script that stopped partway, run again or generated again from the database's revision,
finishes. Inside a caller's transaction (``autocommit_allowed`` false: pytest-alembic, app
code) the same steps run without commits or CONCURRENTLY.

Rewritten in place a second time (README, "Revisions rewritten in place"): the released
``--sql`` script could not be finished once it had stopped after its ``ADD CONSTRAINT``
steps. Only the offline script changed: online runs and the end state are the same, and
the lock keeps the earlier text's digest.

The trigger stays at head: it is how writers that do not set ``sequence_no`` keep working.
A later revision may drop it once no deployed release inserts messages without it.
"""

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import context, op
from alembic.util import CommandError

revision: str = "e76ed0cf054b"
down_revision: str | Sequence[str] | None = "96913cafe93c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

UNIQUE = "uq_messages_conversation_id_sequence_no"
NOT_NULL_CHECK = "ck_messages_sequence_no_not_null"
CONVERSATION_INDEX = "ix_messages_conversation_id"
TRIGGER = "messages_assign_sequence_no"
PROGRESS_EVERY = 10.0  # seconds between backfill progress lines
BACKFILL_PASSES = 3

# SECURITY DEFINER: the previous release's role may lack UPDATE on conversations, which
# locking its row needs. The fixed search_path keeps a caller's objects out of it.
ASSIGN_SEQUENCE_NO = f"""
CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    -- An insert that leaves sequence_no out gets the next number in its conversation.
    -- Locking the conversation's row serialises such inserts (the second one waits, then
    -- sees the first one's number) and keeps them out of the backfill's way.
    PERFORM 1 FROM conversations WHERE id = NEW.conversation_id FOR NO KEY UPDATE;
    IF NOT EXISTS (
        SELECT 1 FROM messages
        WHERE conversation_id = NEW.conversation_id AND sequence_no IS NULL
    ) THEN
        NEW.sequence_no := coalesce(
            (SELECT max(sequence_no) FROM messages WHERE conversation_id = NEW.conversation_id),
            0
        ) + 1;
    END IF;
    -- Otherwise the backfill has yet to reach this conversation, and numbers this row with
    -- the others, by (sent_at, id).
    RETURN NEW;
END
$$
"""
CREATE_TRIGGER = f"""
CREATE OR REPLACE TRIGGER {TRIGGER}
BEFORE INSERT ON messages FOR EACH ROW WHEN (NEW.sequence_no IS NULL)
EXECUTE FUNCTION {TRIGGER}()
"""

# One backfill batch: the next conversations after after_id, locked as the trigger locks
# them, their unnumbered messages numbered after any numbered ones. A temporary function:
# it ends with the session, so even a killed run leaves nothing behind. Online and offline
# runs share it.
NUMBER_MESSAGES = """
CREATE OR REPLACE FUNCTION pg_temp.number_messages(
    after_id bigint, batch_size integer, OUT next_after bigint, OUT numbered integer
) LANGUAGE plpgsql AS $$
DECLARE
    batch bigint[] := ARRAY(
        SELECT id FROM conversations WHERE id > after_id ORDER BY id LIMIT batch_size
    );
BEGIN
    next_after := batch[cardinality(batch)];
    PERFORM 1 FROM conversations AS c
    WHERE c.id = ANY(batch) AND EXISTS (
        SELECT 1 FROM messages AS m WHERE m.conversation_id = c.id AND m.sequence_no IS NULL
    )
    ORDER BY c.id
    FOR NO KEY UPDATE;
    UPDATE messages AS m
    SET sequence_no = n.sequence_no
    FROM (
        SELECT id, sequence_no IS NULL AS unnumbered,
               coalesce(max(sequence_no) OVER (PARTITION BY conversation_id), 0)
               + row_number() OVER (
                   PARTITION BY conversation_id, sequence_no IS NULL ORDER BY sent_at, id
               ) AS sequence_no
        FROM messages
        WHERE conversation_id = ANY(batch)
    ) AS n
    WHERE m.id = n.id AND n.unnumbered;
    GET DIAGNOSTICS numbered = ROW_COUNT;
END
$$
"""
# Where a pass starts: just before the first conversation with an unnumbered message.
FIRST_UNNUMBERED = "SELECT min(conversation_id) - 1 FROM messages WHERE sequence_no IS NULL"
NEXT_BATCH = "SELECT next_after, numbered FROM pg_temp.number_messages(:after, :batch_size)"
# Offline, psql runs the same passes; COMMIT in a top-level DO needs PostgreSQL 11+.
BACKFILL_SCRIPT = f"""
DO $$
DECLARE
    after_id bigint;
    done integer;
    total bigint := 0;
BEGIN
    FOR pass IN 1..{BACKFILL_PASSES} LOOP
        {FIRST_UNNUMBERED} INTO after_id;
        EXIT WHEN after_id IS NULL;
        WHILE after_id IS NOT NULL LOOP
            SELECT next_after, numbered INTO after_id, done
            FROM pg_temp.number_messages(after_id, {{batch_size}});
            total := total + done;
            COMMIT;
        END LOOP;
    END LOOP;
    IF EXISTS (SELECT 1 FROM messages WHERE sequence_no IS NULL) THEN
        RAISE EXCEPTION 'messages without sequence_no keep appearing';
    END IF;
    RAISE NOTICE 'numbered % messages', total;
END
$$
"""

# What the catalog says an earlier, interrupted run of this revision already did.
STATE = f"""
SELECT
    (SELECT attnotnull FROM pg_attribute
     WHERE attrelid = 'messages'::regclass AND attname = 'sequence_no' AND NOT attisdropped),
    EXISTS (SELECT 1 FROM pg_trigger
            WHERE tgrelid = 'messages'::regclass AND tgname = '{TRIGGER}'),
    (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('{UNIQUE}')),
    EXISTS (SELECT 1 FROM pg_constraint
            WHERE conrelid = 'messages'::regclass AND conname = '{UNIQUE}'),
    (SELECT convalidated FROM pg_constraint
     WHERE conrelid = 'messages'::regclass AND conname = '{NOT_NULL_CHECK}'),
    (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('{CONVERSATION_INDEX}'))
"""


@dataclass(frozen=True)
class State:
    """None: absent; for indexes and the check, False: present but not valid (yet)."""

    column_not_null: bool | None
    has_trigger: bool
    unique_index_valid: bool | None
    has_unique_constraint: bool
    check_valid: bool | None
    conversation_index_valid: bool | None


BEFORE = State(None, False, None, False, None, True)
AFTER = State(True, True, True, True, None, None)


def current_state(offline: State) -> State:
    """The catalog's state online; offline, the state the script starts from."""
    if context.is_offline_mode():
        return offline
    return State(*op.get_bind().execute(sa.text(STATE)).one())


def autocommit_allowed() -> bool:
    """False inside a caller's transaction, which we must neither commit nor split."""
    return context.is_offline_mode() or bool(op.get_context().opts.get("autocommit_allowed"))


@contextlib.contextmanager
def outside_transaction() -> Iterator[None]:
    """Each statement commits on its own (CONCURRENTLY needs it; batches want it)."""
    if autocommit_allowed():
        with op.get_context().autocommit_block():
            yield
    else:
        yield


def commit() -> None:
    """End the current transaction here, so the locks taken so far are released."""
    with outside_transaction():
        pass


@contextlib.contextmanager
def timeouts(**values: str) -> Iterator[None]:
    """Other session timeouts for a few statements, then the step's own (env.py's) again."""
    if not autocommit_allowed():
        yield  # the caller's session keeps the caller's settings
        return
    opts = op.get_context().opts
    for name, value in values.items():
        op.execute(f"SET {name} = '{value}'")
    yield
    for name in values:
        op.execute(f"SET {name} = '{opts[name]}'" if name in opts else f"RESET {name}")


def unless_done(statement: str, done: str) -> None:
    """Run ``statement``; in a ``--sql`` script only while the SQL condition ``done`` is false.

    Online, the catalog was read first (``current_state``); a script reads it as psql runs
    it, so that a script that stopped partway can be run again and finish.
    """
    if context.is_offline_mode():
        op.execute(f"DO $$ BEGIN IF NOT ({done}) THEN {statement}; END IF; END $$")
    else:
        op.execute(statement)


def constraint_exists(name: str, *, validated: bool | None = None) -> str:
    """SQL: whether messages has the constraint (and, if asked, whether it is validated)."""
    which = "" if validated is None else f" AND convalidated = {str(validated).lower()}"
    return (
        "EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'messages'::regclass"
        f" AND conname = '{name}'{which})"
    )


COLUMN_NOT_NULL = (
    "coalesce((SELECT attnotnull FROM pg_attribute WHERE attrelid = 'messages'::regclass"
    " AND attname = 'sequence_no' AND NOT attisdropped), false)"
)
INVALID_INDEX = (
    "EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('{}') AND NOT indisvalid)"
)


def nothing_queues_behind() -> contextlib.AbstractContextManager[None]:
    """For statements that take only SHARE UPDATE EXCLUSIVE (CONCURRENTLY, VALIDATE).

    No app query waits behind that lock, so they may run long and wait long: no statement
    timeout, and a lock timeout as long as env.py keeps retrying a step.
    """
    long_wait = op.get_context().opts.get("long_lock_timeout", "3min")
    return timeouts(statement_timeout="0", lock_timeout=long_wait)


def backfill() -> None:
    """Number every unnumbered message, a batch of conversations per transaction."""
    batch_size = int(op.get_context().opts.get("batch_size", 1000))
    op.execute(NUMBER_MESSAGES)
    if context.is_offline_mode():
        # One DO statement runs every batch: no statement timeout may cut it short.
        with timeouts(statement_timeout="0"):
            op.execute(BACKFILL_SCRIPT.format(batch_size=batch_size))
    else:
        number_in_batches(op.get_bind(), batch_size)


def number_in_batches(bind: sa.Connection, batch_size: int) -> None:
    started = last_report = time.monotonic()
    total = batches = 0
    for _ in range(BACKFILL_PASSES):
        after = bind.scalar(sa.text(FIRST_UNNUMBERED))
        if after is None:
            break
        while after is not None:
            after, numbered = bind.execute(
                sa.text(NEXT_BATCH), {"after": after, "batch_size": batch_size}
            ).one()
            total, batches = total + numbered, batches + 1
            if time.monotonic() - last_report >= PROGRESS_EVERY:
                last_report = time.monotonic()
                log.info("backfill: %d messages numbered so far", total)
    else:
        if bind.scalar(sa.text(FIRST_UNNUMBERED)) is not None:
            raise CommandError(
                "messages without sequence_no keep appearing after"
                f" {BACKFILL_PASSES} passes: is a writer inserting them under REPEATABLE READ?"
            )
    if not batches:
        return  # nothing to number (a new database, or a rerun after the backfill)
    elapsed = time.monotonic() - started
    log.info(
        "backfill: numbered %d messages in %d batches in %.2f s (%.0f rows/s)",
        total,
        batches,
        elapsed,
        total / elapsed if elapsed else 0,
    )


def build_index(name: str, columns: list[str], *, valid: bool | None, unique: bool) -> None:
    """Build an index without blocking writes; first drop what a cancelled build left."""
    with nothing_queues_behind():
        if valid is False:
            op.drop_index(
                name, "messages", if_exists=True, postgresql_concurrently=autocommit_allowed()
            )
        elif context.is_offline_mode():
            # What psql finds is not known here. An INVALID index serves no query, so
            # dropping it without CONCURRENTLY holds its lock for a moment only.
            unless_done(f"DROP INDEX {name}", f"NOT {INVALID_INDEX.format(name)}")
        op.create_index(
            name,
            "messages",
            columns,
            unique=unique,
            if_not_exists=True,
            postgresql_concurrently=autocommit_allowed(),
        )


def upgrade() -> None:
    """Apply message sequence numbers."""
    state = current_state(offline=BEFORE)
    # Expand, in one short transaction: the previous release's inserts get numbers from now.
    if state.column_not_null is None:
        op.add_column(
            "messages", sa.Column("sequence_no", sa.Integer(), nullable=True), if_not_exists=True
        )
    op.execute(ASSIGN_SEQUENCE_NO)
    if not state.has_trigger:
        op.execute(CREATE_TRIGGER)

    with outside_transaction():
        if not state.column_not_null:
            backfill()
        if not state.unique_index_valid and not state.has_unique_constraint:
            build_index(
                UNIQUE,
                ["conversation_id", "sequence_no"],
                valid=state.unique_index_valid,
                unique=True,
            )

    if not state.column_not_null:
        if state.check_valid is None:
            unless_done(
                f"ALTER TABLE messages ADD CONSTRAINT {NOT_NULL_CHECK}"
                " CHECK (sequence_no IS NOT NULL) NOT VALID",
                f"{constraint_exists(NOT_NULL_CHECK)} OR {COLUMN_NOT_NULL}",
            )
            commit()
        if not state.check_valid:
            with nothing_queues_behind():
                unless_done(
                    f"ALTER TABLE messages VALIDATE CONSTRAINT {NOT_NULL_CHECK}",
                    f"NOT {constraint_exists(NOT_NULL_CHECK, validated=False)}",
                )
            commit()
        # A moment's ACCESS EXCLUSIVE: the valid check spares SET NOT NULL its scan.
        op.alter_column("messages", "sequence_no", nullable=False)
        op.drop_constraint(op.f(NOT_NULL_CHECK), "messages", type_="check", if_exists=True)
    if not state.has_unique_constraint:
        unless_done(
            f"ALTER TABLE messages ADD CONSTRAINT {UNIQUE} UNIQUE USING INDEX {UNIQUE}",
            constraint_exists(UNIQUE),
        )

    # The unique index leads with conversation_id, so it serves those lookups now.
    if state.conversation_index_valid is not None:
        with outside_transaction(), nothing_queues_behind():
            op.drop_index(
                CONVERSATION_INDEX,
                "messages",
                if_exists=True,
                postgresql_concurrently=autocommit_allowed(),
            )


def downgrade() -> None:
    """Unapply message sequence numbers."""
    state = current_state(offline=AFTER)
    if not state.conversation_index_valid:
        with outside_transaction():
            build_index(
                CONVERSATION_INDEX,
                ["conversation_id"],
                valid=state.conversation_index_valid,
                unique=False,
            )
    # One short transaction; the previous release never reads what it drops.
    op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON messages")
    op.drop_constraint(UNIQUE, "messages", type_="unique", if_exists=True)
    op.drop_column("messages", "sequence_no", if_exists=True)
    op.execute(f"DROP FUNCTION IF EXISTS {TRIGGER}()")
