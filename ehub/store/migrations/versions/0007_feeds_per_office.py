"""Return feeds per office: case records in the feed outbox, the office of each message

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 10:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("feed_messages") as batch:
        batch.add_column(sa.Column("kind", sa.String(10), server_default="license", nullable=False))
        batch.add_column(sa.Column("case_id", BigId, nullable=True))
        batch.add_column(sa.Column("office", sa.String(64), nullable=True))
        batch.alter_column("license_id", existing_type=BigId, nullable=True)
        batch.create_foreign_key(
            op.f("fk_feed_messages_case_id_case_records"), "case_records", ["case_id"], ["id"]
        )
        batch.create_unique_constraint(op.f("uq_feed_messages_case_id"), ["case_id", "topic"])
        batch.create_index(op.f("ix_feed_messages_office"), ["office"], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM feed_messages WHERE license_id IS NULL")
    with op.batch_alter_table("feed_messages") as batch:
        batch.drop_index(op.f("ix_feed_messages_office"))
        batch.drop_constraint(op.f("uq_feed_messages_case_id"), type_="unique")
        batch.drop_constraint(op.f("fk_feed_messages_case_id_case_records"), type_="foreignkey")
        batch.alter_column("license_id", existing_type=BigId, nullable=False)
        for col in ("office", "case_id", "kind"):
            batch.drop_column(col)
