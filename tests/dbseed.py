"""Rows that tests of the persistence layer start from: one organization ``org``, its
namespace ``ns`` and one validated plugin ``p_1_0_0`` in it."""

from __future__ import annotations

from plughost.persistence.db import Database
from plughost.persistence.tables import Namespace, Organization, Plugin

ORG, NS, PLUGIN_ID = "org", "ns", "p_1_0_0"


def seed_plugin(db: Database) -> int:
    """Insert the organization, namespace and plugin; the plugin's primary key."""
    with db.session() as s:
        s.add(Organization(id=ORG, name=ORG))
        s.flush()
        s.add(Namespace(id=NS, organization_id=ORG, name=NS))
        plugin = Plugin(
            plugin_id=PLUGIN_ID,
            organization_id=ORG,
            scope=NS,
            name="p",
            version="1.0.0",
            storage_key="k",
            archive_url="u",
            code_hash="h",
            validation_status="passed",
        )
        s.add(plugin)
        s.flush()
        return plugin.id
