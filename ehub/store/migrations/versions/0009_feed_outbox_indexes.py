"""The feed outbox's indexes for a publisher's hot path

Every feed row was in seven indexes, and the publisher updates each row twice
(``sending``, then ``published``): fourteen index entries a message. Now:

- one message per record version and topic: a partial unique index per record
  kind (a row is in its own kind's only, not in all three with NULLs);
- the queue: ``id`` of the rows not yet published (partial), instead of
  ``(state, id)`` over every row;
- no index on ``office`` (the queue is read in id order; a shard filters it) nor a
  unique one on ``message_id`` (derived from the record version and topic, which
  are unique already).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_KINDS = ("license_id", "case_id", "returned_id")
_UNPUBLISHED = "state IN ('pending', 'sending')"


def upgrade() -> None:
    with op.batch_alter_table("feed_messages") as batch:
        for col in _KINDS:
            batch.drop_constraint(op.f(f"uq_feed_messages_{col}"), type_="unique")
        batch.drop_constraint(op.f("uq_feed_messages_message_id"), type_="unique")
        batch.drop_index(op.f("ix_feed_messages_office"))
        batch.drop_index("ix_feed_messages_state_id")
    for col in _KINDS:
        where = sa.text(f"{col} IS NOT NULL")
        op.create_index(f"uq_feed_messages_{col}", "feed_messages", [col, "topic"], unique=True,
                        postgresql_where=where, sqlite_where=where)  # fmt: skip
    where = sa.text(_UNPUBLISHED)
    op.create_index("ix_feed_messages_unpublished", "feed_messages", ["id"],
                    postgresql_where=where, sqlite_where=where)  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_feed_messages_unpublished", "feed_messages")
    for col in _KINDS:
        op.drop_index(f"uq_feed_messages_{col}", "feed_messages")
    with op.batch_alter_table("feed_messages") as batch:
        for col in _KINDS:
            batch.create_unique_constraint(op.f(f"uq_feed_messages_{col}"), [col, "topic"])
        batch.create_unique_constraint(op.f("uq_feed_messages_message_id"), ["message_id"])
        batch.create_index(op.f("ix_feed_messages_office"), ["office"], unique=False)
        batch.create_index("ix_feed_messages_state_id", ["state", "id"], unique=False)
