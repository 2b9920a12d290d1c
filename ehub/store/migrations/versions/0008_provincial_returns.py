"""Records handed back by the provincial platform's return interface (属地返还)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "returned_records",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("platform", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("identifier", sa.String(120), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("division", sa.String(12), nullable=True),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("platform_cursor", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_returned_records")),
        sa.UniqueConstraint(
            "platform", "kind", "identifier", "version", name=op.f("uq_returned_records_platform")
        ),
    )
    op.create_table(
        "return_cursors",
        sa.Column("platform", sa.String(20), nullable=False),
        sa.Column("division", sa.String(12), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("platform", "division", name=op.f("pk_return_cursors")),
    )
    with op.batch_alter_table("feed_messages") as batch:
        batch.add_column(sa.Column("returned_id", BigId, nullable=True))
        batch.create_foreign_key(
            op.f("fk_feed_messages_returned_id_returned_records"),
            "returned_records", ["returned_id"], ["id"],
        )  # fmt: skip
        batch.create_unique_constraint(
            op.f("uq_feed_messages_returned_id"), ["returned_id", "topic"]
        )


def downgrade() -> None:
    op.execute("DELETE FROM feed_messages WHERE returned_id IS NOT NULL")
    with op.batch_alter_table("feed_messages") as batch:
        batch.drop_constraint(op.f("uq_feed_messages_returned_id"), type_="unique")
        batch.drop_constraint(
            op.f("fk_feed_messages_returned_id_returned_records"), type_="foreignkey"
        )
        batch.drop_column("returned_id")
    op.drop_table("return_cursors")
    op.drop_table("returned_records")
