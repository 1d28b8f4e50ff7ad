"""Cleanup plans: versions a scheduled cleanup will archive once their owners' notice passed.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from model_manager.registry.schema import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cleanup_plans",
        sa.Column("model", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("finding", sa.String(32), nullable=False),
        sa.Column("planned_at", UTCDateTime, nullable=False),
        sa.Column("archive_after", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cleanup_plans")
