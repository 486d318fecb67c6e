"""namespace policies: one row per namespace with quotas (replicas, memory, batch jobs,
requests per second per namespace and per key) or an egress allowlist

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 01:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "namespace_policies",
        sa.Column("namespace_id", sa.String(length=64), nullable=False),
        sa.Column("max_replicas", sa.Integer(), nullable=True),
        sa.Column("max_memory_mb", sa.Integer(), nullable=True),
        sa.Column("max_batch_jobs", sa.Integer(), nullable=True),
        sa.Column("requests_per_second", sa.Float(), nullable=True),
        sa.Column("key_requests_per_second", sa.Float(), nullable=True),
        sa.Column("egress_allow", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["namespace_id"], ["namespaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("namespace_id"),
    )


def downgrade() -> None:
    op.drop_table("namespace_policies")
