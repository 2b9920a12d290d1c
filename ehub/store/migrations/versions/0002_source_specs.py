"""source specs: any connector's cursor; quarantine indexes for corrections and listing

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("watermarks") as batch:
        batch.alter_column("cursor", type_=sa.Text(), existing_nullable=False)
    op.create_index("ix_quarantine_source_key", "quarantine", ["source_id", "source_key"])
    op.create_index("ix_quarantine_state_id", "quarantine", ["state", "id"])
    op.create_index("ix_raw_records_source_state_id", "raw_records", ["source_id", "state", "id"])


def downgrade() -> None:
    op.drop_index("ix_raw_records_source_state_id", table_name="raw_records")
    op.drop_index("ix_quarantine_state_id", table_name="quarantine")
    op.drop_index("ix_quarantine_source_key", table_name="quarantine")
    with op.batch_alter_table("watermarks") as batch:
        batch.alter_column("cursor", type_=sa.String(length=400), existing_nullable=False)
