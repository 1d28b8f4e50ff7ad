"""Model settings, shadow comparisons per day and the sampled prediction log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from model_manager.registry.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _model_id(primary_key: bool) -> sa.Column[int]:
    return sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"),
                     primary_key=primary_key, nullable=False)


def upgrade() -> None:
    op.create_table(
        "model_settings", _model_id(True),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "shadow_daily", _model_id(True),
        sa.Column("primary_version", sa.Integer, primary_key=True),
        sa.Column("shadow_version", sa.Integer, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("stats", sa.JSON, nullable=False),
    )
    op.create_table(
        "prediction_log",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_id(False),
        sa.Column("prediction_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("prediction", sa.JSON, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=True),
        sa.Column("outcome", sa.JSON, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_prediction_log_lookup", "prediction_log", ["model_id", "prediction_id"])


def downgrade() -> None:
    op.drop_index("ix_prediction_log_lookup", "prediction_log")
    op.drop_table("prediction_log")
    op.drop_table("shadow_daily")
    op.drop_table("model_settings")
