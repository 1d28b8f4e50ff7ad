"""Written batches: ids of telemetry batches already written, so a retry writes nothing twice.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from model_manager.registry.schema import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "written_batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("written_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_written_batches_written_at", "written_batches", ["written_at"])


def downgrade() -> None:
    op.drop_table("written_batches")
