"""the controller's lease (several servers on one database) and change notifications

One row per lease name (``controller``): who holds it, its epoch (the fencing token every
controller write checks) and until when (database clock). On PostgreSQL, triggers send a
NOTIFY on channel ``plughost_changes`` for every release event, alias change, API key
change and lease change, so every server's memory follows the others' writes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 06:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FUNCTIONS = {
    # payload: one letter (what changed) and, for releases, the release id
    "plughost_notify_release": "PERFORM pg_notify('plughost_changes', 'r' || NEW.release_id);",
    "plughost_notify_alias": "PERFORM pg_notify('plughost_changes', 'a');",
    "plughost_notify_key": "PERFORM pg_notify('plughost_changes', 'k');",
    "plughost_notify_lease": "PERFORM pg_notify('plughost_changes', 'l');",
}
_TRIGGERS = [
    ("plughost_release_events_notify", "release_events", "INSERT", "plughost_notify_release"),
    ("plughost_aliases_notify", "aliases", "INSERT OR UPDATE OR DELETE", "plughost_notify_alias"),
    ("plughost_api_keys_notify", "api_keys", "INSERT OR UPDATE OR DELETE", "plughost_notify_key"),
    ("plughost_leases_notify", "leases", "INSERT OR UPDATE", "plughost_notify_lease"),
]


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=512), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, body in _FUNCTIONS.items():
        op.execute(
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$ "
            f"BEGIN {body} RETURN NULL; END; $$ LANGUAGE plpgsql"
        )
    for trigger, table, events, function in _TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {trigger} AFTER {events} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for trigger, table, _, _ in _TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        for name in _FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("leases")
