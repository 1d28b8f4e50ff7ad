"""The blob of a version's compiled twin (an ONNX model of a scikit-learn estimator).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("compiled_sha256", sa.String(64), nullable=True))
        batch.create_index("ix_versions_compiled_sha256", ["compiled_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_index("ix_versions_compiled_sha256")
        batch.drop_column("compiled_sha256")
