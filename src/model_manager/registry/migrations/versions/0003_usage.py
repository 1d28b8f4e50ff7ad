"""Daily usage buckets per version: counts, errors by kind, latency histograms, first/last use.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from model_manager.registry.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("first_used", UTCDateTime, nullable=True),
        sa.Column("last_used", UTCDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("usage_daily")
