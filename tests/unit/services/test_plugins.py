"""The registry's read and membership use cases over a real database, a local archive store
and recorded deployment hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from plughost.domain.scope import PluginScope
from plughost.errors import NotFoundError, ValidationError
from plughost.persistence.db import Database
from plughost.persistence.tables import NamespacePlugin, Plugin
from plughost.services.plugins import DeployState, Plugins, find_plugin
from plughost.storage.local import LocalArchiveStore

from .conftest import NS_A, NS_B, ORG_LEVEL, OTHER_TENANT, add_plugin


@dataclass
class RecordingHooks:
    """Deployment hooks with knobs: which plugins serve, and what `remove` answers."""

    serving: set[int] = field(default_factory=set)
    removes_live: bool = False
    removed: list[tuple[int, str | None]] = field(default_factory=list)
    forgotten: list[tuple[int, bool]] = field(default_factory=list)

    def state(self, plugin: Plugin, namespace_id: str | None) -> DeployState:
        if plugin.id in self.serving:
            at = datetime(2024, 5, 1, tzinfo=UTC)
            return DeployState(True, at, f"custom_plugin_{plugin.plugin_id}")
        return DeployState(deployed=False)

    def serving_plugins(self, namespace_id: str | None) -> set[int]:
        return set(self.serving)

    def remove(self, plugin: Plugin, namespace_id: str | None) -> bool:
        self.removed.append((plugin.id, namespace_id))
        return self.removes_live

    def plugin_removed(self, plugin_pk: int, deleted: bool) -> None:
        self.forgotten.append((plugin_pk, deleted))


@pytest.fixture
def hooks() -> RecordingHooks:
    return RecordingHooks()


@pytest.fixture
def plugins(db: Database, store: LocalArchiveStore, hooks: RecordingHooks) -> Plugins:
    return Plugins(db, store, hooks)


def enabled_pks(db: Database, namespace_id: str) -> set[int]:
    with db.session() as s:
        return set(
            s.scalars(
                select(NamespacePlugin.plugin_pk).where(
                    NamespacePlugin.namespace_id == namespace_id
                )
            )
        )


# -- list and get ------------------------------------------------------------------------------
def test_a_listing_shows_only_the_scopes_own_plugins_with_their_serving_flag(
    plugins: Plugins, db: Database, hooks: RecordingHooks
) -> None:
    mine = add_plugin(db, NS_A, "embed")
    other = add_plugin(db, NS_A, "embed", "2.0.0")
    add_plugin(db, NS_B, "sibling")
    add_plugin(db, ORG_LEVEL, "shared")
    add_plugin(db, OTHER_TENANT, "embed")
    hooks.serving = {other.id}
    body = plugins.list(NS_A)
    assert body["total"] == 2 and body["namespace_id"] == "ns_a"
    assert [(p["plugin_id"], p["deployed"]) for p in body["plugins"]] == [
        (mine.plugin_id, False),
        (other.plugin_id, True),
    ]
    org = plugins.list(ORG_LEVEL)
    assert [p["name"] for p in org["plugins"]] == ["shared"]
    assert org["organization_id"] == "org_a" and "namespace_id" not in org


def test_get_answers_the_document_and_deployment_info_of_a_serving_plugin(
    plugins: Plugins, db: Database, hooks: RecordingHooks
) -> None:
    row = add_plugin(db, NS_A, "embed", has_realtime=True)
    hooks.serving = {row.id}
    doc = plugins.get(NS_A, "embed_1_0_0", download_url="https://dl")
    assert doc["presigned_download_url"] == "https://dl"
    plugin = doc["plugin"]
    assert plugin["deployed"] is True and plugin["namespace_id"] == "ns_a"
    assert plugin["deployment_info"] == {
        "ray_cluster_url": None,
        "ray_deployment_name": "custom_plugin_embed_1_0_0",
        "feature_uri": "mixpeek://embed@1.0.0",
        "deployed_at": "2024-05-01T00:00:00Z",
    }
    assert plugin["resolved_inference_name"] == "custom_plugin_embed_1_0_0"


def test_get_of_an_undeployed_plugin_has_no_deployment_info_nor_download_url(
    plugins: Plugins, db: Database
) -> None:
    add_plugin(db, NS_A, "embed")
    body = plugins.get(NS_A, "embed_1_0_0")
    assert "presigned_download_url" not in body
    assert body["plugin"]["deployed"] is False and body["plugin"]["deployment_info"] is None


@pytest.mark.parametrize("scope", [NS_B, ORG_LEVEL, OTHER_TENANT, PluginScope("org_b", "ns_a")])
def test_a_plugin_is_not_found_from_another_namespace_or_tenant(
    plugins: Plugins, db: Database, scope: PluginScope
) -> None:
    add_plugin(db, NS_A, "embed")
    with pytest.raises(NotFoundError) as err:
        plugins.get(scope, "embed_1_0_0")
    assert err.value.error_type == "NotFoundError"
    with pytest.raises(NotFoundError):
        plugins.storage_key(scope, "embed_1_0_0")


@pytest.mark.parametrize("plugin_id", ["", "embed", "embed_1_0_0' OR '1'='1", "../embed_1_0_0"])
def test_unknown_or_hostile_plugin_ids_are_not_found(
    plugins: Plugins, db: Database, plugin_id: str
) -> None:
    add_plugin(db, NS_A, "embed")
    with pytest.raises(NotFoundError):
        plugins.get(NS_A, plugin_id)


def test_an_enabled_organization_plugin_is_found_in_that_namespace_only(
    plugins: Plugins, db: Database
) -> None:
    row = add_plugin(db, ORG_LEVEL, "shared")
    plugins.enable(NS_A, "shared_1_0_0", None)
    with db.session() as s:
        assert find_plugin(s, NS_A, "shared_1_0_0").id == row.id
        with pytest.raises(NotFoundError, match="namespace 'ns_b'"):
            find_plugin(s, NS_B, "shared_1_0_0")
    assert plugins.storage_key(NS_A, "shared_1_0_0") == row.storage_key


# -- delete ------------------------------------------------------------------------------------
def test_delete_takes_down_the_deployment_then_removes_row_membership_and_archive(
    plugins: Plugins, db: Database, store: LocalArchiveStore, hooks: RecordingHooks
) -> None:
    row = add_plugin(db, ORG_LEVEL, "shared", store=store)
    plugins.enable(NS_A, "shared_1_0_0", None)
    hooks.removes_live = True
    body = plugins.delete(ORG_LEVEL, "shared_1_0_0")
    assert body["message"] == "plugin shared_1_0_0 deleted and its deployment removed"
    assert "deployment_removed" not in body  # an organization-level answer
    assert hooks.removed == [(row.id, None)] and hooks.forgotten == [(row.id, True)]
    assert not store.local_path(row.storage_key).exists()
    assert enabled_pks(db, "ns_a") == set()
    with pytest.raises(NotFoundError):
        plugins.get(ORG_LEVEL, "shared_1_0_0")


def test_delete_in_a_namespace_says_whether_a_deployment_was_removed(
    plugins: Plugins, db: Database, store: LocalArchiveStore
) -> None:
    add_plugin(db, NS_A, "embed", store=store)
    body = plugins.delete(NS_A, "embed_1_0_0")
    assert body["deployment_removed"] is False
    assert body["message"] == "plugin embed_1_0_0 deleted"


@pytest.mark.parametrize("scope", [NS_B, OTHER_TENANT, ORG_LEVEL])
def test_delete_from_another_scope_is_not_found_and_touches_nothing(
    plugins: Plugins,
    db: Database,
    store: LocalArchiveStore,
    hooks: RecordingHooks,
    scope: PluginScope,
) -> None:
    row = add_plugin(db, NS_A, "embed", store=store)
    with pytest.raises(NotFoundError):
        plugins.delete(scope, "embed_1_0_0")
    assert hooks.removed == [] and store.local_path(row.storage_key).exists()
    assert plugins.get(NS_A, "embed_1_0_0")["plugin"]["plugin_id"] == "embed_1_0_0"


def test_an_enabled_organization_plugin_cannot_be_deleted_from_a_namespace(
    plugins: Plugins, db: Database, store: LocalArchiveStore
) -> None:
    add_plugin(db, ORG_LEVEL, "shared", store=store)
    plugins.enable(NS_A, "shared_1_0_0", None)
    with pytest.raises(NotFoundError):
        plugins.delete(NS_A, "shared_1_0_0")


# -- organization plugins in namespaces --------------------------------------------------------
def test_available_lists_the_organizations_plugins_and_where_they_are_enabled(
    plugins: Plugins, db: Database
) -> None:
    add_plugin(db, ORG_LEVEL, "shared")
    add_plugin(db, ORG_LEVEL, "other")
    add_plugin(db, NS_A, "private")
    add_plugin(db, PluginScope("org_b", None), "foreign")
    plugins.enable(NS_A, "other_1_0_0", {"k": 1})
    body = plugins.available(NS_A)
    assert [(p["plugin_id"], p["enabled_in_namespace"]) for p in body["plugins"]] == [
        ("shared_1_0_0", False),
        ("other_1_0_0", True),
    ]
    assert body["total"] == 2 and body["namespace_id"] == "ns_a"
    assert [p["enabled_in_namespace"] for p in plugins.available(NS_B)["plugins"]] == [False] * 2


def test_enabling_twice_updates_the_parameters(plugins: Plugins, db: Database) -> None:
    row = add_plugin(db, ORG_LEVEL, "shared")
    first = plugins.enable(NS_A, "shared_1_0_0", {"k": 1})
    assert first["message"] == "plugin shared_1_0_0 enabled in namespace ns_a"
    assert first["feature_uri"] == "mixpeek://shared@1.0.0"
    second = plugins.enable(NS_A, "shared_1_0_0", {"k": 2})
    assert "already enabled; parameters updated" in second["message"]
    with db.session() as s:
        assert s.get(NamespacePlugin, ("ns_a", row.id)).params == {"k": 2}  # type: ignore[union-attr]


def test_a_plugin_that_failed_validation_cannot_be_enabled(plugins: Plugins, db: Database) -> None:
    add_plugin(db, ORG_LEVEL, "broken", validation_status="failed")
    with pytest.raises(ValidationError, match="did not pass validation"):
        plugins.enable(NS_A, "broken_1_0_0", None)
    assert enabled_pks(db, "ns_a") == set()


@pytest.mark.parametrize(
    ("owner", "scope"),
    [
        (NS_A, NS_A),  # a namespace plugin is not an organization plugin
        (PluginScope("org_b", None), NS_A),  # another tenant's organization plugin
        (ORG_LEVEL, OTHER_TENANT),  # into another tenant's namespace
    ],
)
def test_only_the_callers_own_organization_plugins_can_be_enabled(
    plugins: Plugins, db: Database, owner: PluginScope, scope: PluginScope
) -> None:
    add_plugin(db, owner, "shared")
    with pytest.raises(NotFoundError, match="organization plugin 'shared_1_0_0' not found"):
        plugins.enable(scope, "shared_1_0_0", None)
    with pytest.raises(NotFoundError):
        plugins.disable(scope, "shared_1_0_0")


def test_disable_removes_the_membership_and_the_namespaces_deployment(
    plugins: Plugins, db: Database, hooks: RecordingHooks
) -> None:
    row = add_plugin(db, ORG_LEVEL, "shared")
    plugins.enable(NS_A, "shared_1_0_0", None)
    plugins.enable(NS_B, "shared_1_0_0", None)
    hooks.removes_live = True
    body = plugins.disable(NS_A, "shared_1_0_0")
    assert body["message"] == (
        "plugin shared_1_0_0 disabled in namespace ns_a and its deployment removed"
    )
    assert hooks.removed == [(row.id, "ns_a")] and hooks.forgotten == [(row.id, False)]
    assert enabled_pks(db, "ns_a") == set() and enabled_pks(db, "ns_b") == {row.id}
    with pytest.raises(NotFoundError):
        plugins.get(NS_A, "shared_1_0_0")


def test_disabling_a_plugin_that_was_not_enabled_changes_nothing(
    plugins: Plugins, db: Database, hooks: RecordingHooks
) -> None:
    add_plugin(db, ORG_LEVEL, "shared")
    body = plugins.disable(NS_A, "shared_1_0_0")
    assert body["message"] == "plugin shared_1_0_0 was not enabled in namespace ns_a"
    assert hooks.removed == [] and hooks.forgotten == []
