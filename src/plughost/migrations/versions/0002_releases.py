"""releases, release events and aliases for deployments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 16:12:31.918890
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace_id", sa.String(length=64), nullable=False),
        sa.Column("plugin_pk", sa.Integer(), nullable=False),
        sa.Column("plugin_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
        ),
        sa.ForeignKeyConstraint(["plugin_pk"], ["plugins.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_releases_namespace_id"), ["namespace_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_releases_plugin_pk"), ["plugin_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_releases_status"), ["status"], unique=False)

    op.create_table(
        "aliases",
        sa.Column("namespace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
        ),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("namespace_id", "name"),
    )
    op.create_table(
        "release_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("release_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_release_events_release_id"), ["release_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("release_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_events_release_id"))

    op.drop_table("release_events")
    op.drop_table("aliases")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_releases_status"))
        batch_op.drop_index(batch_op.f("ix_releases_plugin_pk"))
        batch_op.drop_index(batch_op.f("ix_releases_namespace_id"))

    op.drop_table("releases")
