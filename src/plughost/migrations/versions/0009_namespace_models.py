"""namespace models: one row per model of a namespace (uploaded or an organization model
enabled there), and the model ids each plugin's code names

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 13:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "namespace_models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("namespace_id", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("model_format", sa.String(length=16), nullable=False),
        sa.Column("framework", sa.String(length=100), nullable=True),
        sa.Column("task_type", sa.String(length=100), nullable=True),
        sa.Column("num_cpus", sa.Float(), nullable=True),
        sa.Column("num_gpus", sa.Integer(), nullable=True),
        sa.Column("memory_gb", sa.Float(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("archive_key", sa.String(length=512), nullable=False),
        sa.Column("deployed", sa.Boolean(), nullable=False),
        sa.Column("source_namespace_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["namespace_id"], ["namespaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace_id", "model_id"),
    )
    op.create_index(
        "ix_namespace_models_organization_id", "namespace_models", ["organization_id"]
    )
    op.create_index("ix_namespace_models_namespace_id", "namespace_models", ["namespace_id"])
    op.create_index("ix_namespace_models_sha256", "namespace_models", ["sha256"])
    with op.batch_alter_table("plugins") as batch:
        batch.add_column(sa.Column("model_refs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("plugins") as batch:
        batch.drop_column("model_refs")
    op.drop_index("ix_namespace_models_sha256", table_name="namespace_models")
    op.drop_index("ix_namespace_models_namespace_id", table_name="namespace_models")
    op.drop_index("ix_namespace_models_organization_id", table_name="namespace_models")
    op.drop_table("namespace_models")
