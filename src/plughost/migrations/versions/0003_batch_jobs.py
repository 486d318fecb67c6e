"""batch jobs and their status events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 02:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("namespace_id", sa.String(length=64), nullable=False),
        sa.Column("plugin_pk", sa.Integer(), nullable=False),
        sa.Column("plugin_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input_key", sa.String(length=512), nullable=False),
        sa.Column("input_format", sa.String(length=16), nullable=False),
        sa.Column("input_name", sa.String(length=512), nullable=True),
        sa.Column("input_owned", sa.Boolean(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=True),
        sa.Column("on_error", sa.String(length=8), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=True),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("rows_failed", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("output_key", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["namespace_id"], ["namespaces.id"]),
        sa.ForeignKeyConstraint(["plugin_pk"], ["plugins.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_batch_jobs_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_batch_jobs_namespace_id"), ["namespace_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_batch_jobs_plugin_pk"), ["plugin_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_batch_jobs_status"), ["status"], unique=False)

    op.create_table(
        "batch_job_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["batch_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("batch_job_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_batch_job_events_batch_id"), ["batch_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("batch_job_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batch_job_events_batch_id"))
    op.drop_table("batch_job_events")
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batch_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_batch_jobs_plugin_pk"))
        batch_op.drop_index(batch_op.f("ix_batch_jobs_namespace_id"))
        batch_op.drop_index(batch_op.f("ix_batch_jobs_organization_id"))
    op.drop_table("batch_jobs")
