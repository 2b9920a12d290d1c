"""The office registry of the return feeds: offices and their credentials

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "offices",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("division", sa.String(12), nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("license_types", sa.JSON(), nullable=False),
        sa.Column("include_children", sa.Boolean(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("masking", sa.JSON(), nullable=False),
        sa.Column("delivery", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_offices")),
    )
    op.create_index(op.f("ix_offices_division"), "offices", ["division"], unique=False)
    op.create_table(
        "office_credentials",
        sa.Column("id", BigId, nullable=False),
        sa.Column("office_code", sa.String(64), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("token_hint", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["office_code"],
            ["offices.code"],
            name=op.f("fk_office_credentials_office_code_offices"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_office_credentials")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_office_credentials_token_sha256")),
    )
    op.create_index(
        op.f("ix_office_credentials_office_code"),
        "office_credentials",
        ["office_code"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_office_credentials_office_code"), table_name="office_credentials")
    op.drop_table("office_credentials")
    op.drop_index(op.f("ix_offices_division"), table_name="offices")
    op.drop_table("offices")
