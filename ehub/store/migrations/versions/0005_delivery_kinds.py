"""Deliveries of case records and seal registrations; per-destination circuit breakers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("kind", sa.String(10), server_default="license", nullable=False))
        batch.add_column(sa.Column("case_id", BigId, nullable=True))
        batch.add_column(sa.Column("seal_id", BigId, nullable=True))
        batch.add_column(sa.Column("subject", sa.String(120), server_default="", nullable=False))
        batch.add_column(sa.Column("version", sa.Integer(), server_default="0", nullable=False))
        batch.alter_column("license_id", existing_type=BigId, nullable=True)
        batch.create_foreign_key(
            op.f("fk_deliveries_case_id_case_records"), "case_records", ["case_id"], ["id"]
        )
        batch.create_foreign_key(op.f("fk_deliveries_seal_id_seals"), "seals", ["seal_id"], ["id"])
        batch.create_unique_constraint(op.f("uq_deliveries_case_id"), ["case_id", "destination"])
        batch.create_unique_constraint(op.f("uq_deliveries_seal_id"), ["seal_id", "destination"])
        batch.create_index("ix_deliveries_subject", ["subject", "version"], unique=False)
    op.execute(
        "UPDATE deliveries SET subject = (SELECT identifier FROM licenses "
        "WHERE licenses.id = deliveries.license_id), version = (SELECT version FROM licenses "
        "WHERE licenses.id = deliveries.license_id) WHERE license_id IS NOT NULL"
    )
    op.create_table(
        "delivery_circuits",
        sa.Column("destination", sa.String(40), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("destination", name=op.f("pk_delivery_circuits")),
    )


def downgrade() -> None:
    op.drop_table("delivery_circuits")
    op.execute("DELETE FROM deliveries WHERE license_id IS NULL")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_subject")
        batch.drop_constraint(op.f("uq_deliveries_seal_id"), type_="unique")
        batch.drop_constraint(op.f("uq_deliveries_case_id"), type_="unique")
        batch.drop_constraint(op.f("fk_deliveries_seal_id_seals"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_deliveries_case_id_case_records"), type_="foreignkey")
        batch.alter_column("license_id", existing_type=BigId, nullable=False)
        for col in ("version", "subject", "seal_id", "case_id", "kind"):
            batch.drop_column(col)
