"""notify plugin deletions and disables, so every server forgets its cached lookups

On PostgreSQL: a deleted plugin row notifies ``d<plugin pk>`` and a removed namespace link
(a disable) ``x<plugin pk>`` on channel ``plughost_changes`` (see migration 0006).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 06:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_FUNCTIONS = {
    "plughost_notify_plugin_deleted": "PERFORM pg_notify('plughost_changes', 'd' || OLD.id);",
    "plughost_notify_plugin_disabled": "PERFORM pg_notify('plughost_changes', 'x' || OLD.plugin_pk);",
}
_TRIGGERS = [
    ("plughost_plugins_notify", "plugins", "plughost_notify_plugin_deleted"),
    ("plughost_namespace_plugins_notify", "namespace_plugins", "plughost_notify_plugin_disabled"),
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, body in _FUNCTIONS.items():
        op.execute(
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$ "
            f"BEGIN {body} RETURN NULL; END; $$ LANGUAGE plpgsql"
        )
    for trigger, table, function in _TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {trigger} AFTER DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for trigger, table, _ in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
    for name in _FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
