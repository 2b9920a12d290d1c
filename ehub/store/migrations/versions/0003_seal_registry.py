"""seal registry: division, license types, cross-level use, image, chain, status history, 备案

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 03:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_NULLABLE = (
    ("image_path", sa.Text()),
    ("image_sha256", sa.String(length=64)),
    ("chain_pem", sa.Text()),
    ("status_reason", sa.Text()),
    ("suspended_at", sa.DateTime(timezone=True)),
    ("revoked_at", sa.DateTime(timezone=True)),
    ("registration_no", sa.String(length=64)),
    ("registered_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("seals") as batch:
        batch.add_column(
            sa.Column("division", sa.String(length=12), server_default="", nullable=False)
        )
        batch.add_column(sa.Column("license_types", sa.JSON(), server_default="[]", nullable=False))
        batch.add_column(
            sa.Column("cross_level", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        for name, type_ in _NULLABLE:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.create_index("ix_seals_department_uscc", ["department_uscc"])
    # A seal registered before this revision: its division is the one inside the
    # department's USCC (GB 32100 characters 3-8).
    op.execute("UPDATE seals SET division = substr(department_uscc, 3, 6) WHERE division = ''")


def downgrade() -> None:
    with op.batch_alter_table("seals") as batch:
        batch.drop_index("ix_seals_department_uscc")
        for name, _type in reversed(_NULLABLE):
            batch.drop_column(name)
        batch.drop_column("cross_level")
        batch.drop_column("license_types")
        batch.drop_column("division")
