"""Registry read and membership use cases: list, get, delete, available, enable, disable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from plughost.domain.ids import feature_uri_for
from plughost.domain.scope import PluginScope
from plughost.errors import NotFoundError, ValidationError
from plughost.persistence.db import Database
from plughost.persistence.tables import NamespacePlugin, Plugin
from plughost.services import views
from plughost.storage.base import ArchiveStore
from plughost.timeutil import iso


@dataclass(frozen=True)
class DeployState:
    deployed: bool
    deployed_at: datetime | None = None
    deployment_name: str | None = None


class DeploymentHooks(Protocol):
    """What the registry needs from the deployment side (kept small on purpose)."""

    def state(self, plugin: Plugin, namespace_id: str | None) -> DeployState: ...

    def serving_plugins(self, namespace_id: str | None) -> set[int]:
        """Primary keys of the plugins serving in the namespace (one query for a listing)."""
        ...

    def remove(self, plugin: Plugin, namespace_id: str | None) -> bool:
        """Take down any deployment of the plugin; True when a live one was removed."""
        ...

    def plugin_removed(self, plugin_pk: int, deleted: bool) -> None:
        """The plugin was deleted, or disabled in a namespace: drop what was cached of it."""
        ...


class NoDeployments:
    """Hooks for a registry without a deployment side (tests of the registry alone)."""

    def state(self, plugin: Plugin, namespace_id: str | None) -> DeployState:
        return DeployState(deployed=False)

    def serving_plugins(self, namespace_id: str | None) -> set[int]:
        return set()

    def remove(self, plugin: Plugin, namespace_id: str | None) -> bool:
        return False

    def plugin_removed(self, plugin_pk: int, deleted: bool) -> None:
        return None


def find_plugin(s: Session, scope: PluginScope, plugin_id: str) -> Plugin:
    """The plugin `plugin_id` in `scope`; in a namespace, an enabled org plugin also counts."""
    row = s.scalars(
        select(Plugin).where(
            Plugin.organization_id == scope.organization_id,
            Plugin.scope == scope.key,
            Plugin.plugin_id == plugin_id,
        )
    ).first()
    if row is None and scope.namespace_id:
        row = s.scalars(
            select(Plugin)
            .join(NamespacePlugin, NamespacePlugin.plugin_pk == Plugin.id)
            .where(
                NamespacePlugin.namespace_id == scope.namespace_id, Plugin.plugin_id == plugin_id
            )
        ).first()
    if row is None:
        where = f"namespace {scope.namespace_id!r}" if scope.namespace_id else "this organization"
        raise NotFoundError(f"plugin {plugin_id!r} not found in {where}")
    return row


class Plugins:
    """Read and membership use cases of the registry."""

    def __init__(self, db: Database, store: ArchiveStore, hooks: DeploymentHooks) -> None:
        self.db = db
        self.store = store
        self.hooks = hooks

    def list(self, scope: PluginScope) -> dict[str, Any]:
        with self.db.session() as s:
            rows = s.scalars(
                select(Plugin)
                .where(Plugin.organization_id == scope.organization_id, Plugin.scope == scope.key)
                .order_by(Plugin.created_at, Plugin.id)
            ).all()
            serving = self.hooks.serving_plugins(scope.namespace_id)
            items = [views.list_item(p, p.id in serving) for p in rows]
        return {"success": True, "plugins": items, "total": len(items), **scope.fields()}

    def get(self, scope: PluginScope, plugin_id: str, download_url: str | None = None) -> dict[str, Any]:
        with self.db.session() as s:
            plugin = find_plugin(s, scope, plugin_id)
            state = self.hooks.state(plugin, scope.namespace_id)
            info = None
            if state.deployed:
                info = {
                    "ray_cluster_url": None,
                    "ray_deployment_name": state.deployment_name,
                    "feature_uri": feature_uri_for(plugin.name, plugin.version),
                    "deployed_at": iso(state.deployed_at),
                }
            doc = views.plugin_document(
                plugin,
                state.deployed,
                info,
                iso(state.deployed_at),
                state.deployment_name if plugin.has_realtime else None,
            )
        body: dict[str, Any] = {"success": True, "plugin": doc}
        if download_url is not None:
            body["presigned_download_url"] = download_url
        return body

    def storage_key(self, scope: PluginScope, plugin_id: str) -> str:
        with self.db.session() as s:
            return find_plugin(s, scope, plugin_id).storage_key

    def delete(self, scope: PluginScope, plugin_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            plugin = s.scalars(
                select(Plugin).where(
                    Plugin.organization_id == scope.organization_id,
                    Plugin.scope == scope.key,
                    Plugin.plugin_id == plugin_id,
                )
            ).first()
            if plugin is None:
                raise NotFoundError(f"plugin {plugin_id!r} not found")
            s.expunge(plugin)
        removed = self.hooks.remove(plugin, scope.namespace_id)
        with self.db.session() as s:
            s.execute(delete(NamespacePlugin).where(NamespacePlugin.plugin_pk == plugin.id))
            s.execute(delete(Plugin).where(Plugin.id == plugin.id))
        self.hooks.plugin_removed(plugin.id, deleted=True)
        self.store.delete(plugin.storage_key)
        body: dict[str, Any] = {
            "success": True,
            "plugin_id": plugin_id,
            "message": f"plugin {plugin_id} deleted"
            + (" and its deployment removed" if removed else ""),
        }
        if scope.namespace_id:
            body["deployment_removed"] = removed
        return body

    # -- organization plugins in namespaces ---------------------------------------------------
    def _org_plugin(self, s: Session, organization_id: str, plugin_id: str) -> Plugin:
        plugin = s.scalars(
            select(Plugin).where(
                Plugin.organization_id == organization_id,
                Plugin.scope == "",
                Plugin.plugin_id == plugin_id,
            )
        ).first()
        if plugin is None:
            raise NotFoundError(f"organization plugin {plugin_id!r} not found")
        return plugin

    def available(self, scope: PluginScope) -> dict[str, Any]:
        assert scope.namespace_id is not None
        with self.db.session() as s:
            rows = s.scalars(
                select(Plugin)
                .where(Plugin.organization_id == scope.organization_id, Plugin.scope == "")
                .order_by(Plugin.created_at, Plugin.id)
            ).all()
            enabled = set(
                s.scalars(
                    select(NamespacePlugin.plugin_pk).where(
                        NamespacePlugin.namespace_id == scope.namespace_id
                    )
                )
            )
            items = [
                {
                    "plugin_id": p.plugin_id,
                    "name": p.name,
                    "version": p.version,
                    "description": p.description,
                    "feature_uri": feature_uri_for(p.name, p.version),
                    "validation_status": p.validation_status,
                    "enabled_in_namespace": p.id in enabled,
                    "created_at": iso(p.created_at),
                }
                for p in rows
            ]
        return {
            "success": True,
            "plugins": items,
            "total": len(items),
            "organization_id": scope.organization_id,
            "namespace_id": scope.namespace_id,
        }

    def enable(self, scope: PluginScope, plugin_id: str, params: dict[str, Any] | None) -> dict[str, Any]:
        assert scope.namespace_id is not None
        with self.db.session() as s:
            plugin = self._org_plugin(s, scope.organization_id, plugin_id)
            if plugin.validation_status != "passed":
                raise ValidationError(f"plugin {plugin_id!r} did not pass validation")
            row = s.get(NamespacePlugin, (scope.namespace_id, plugin.id))
            if row is None:
                s.add(
                    NamespacePlugin(
                        namespace_id=scope.namespace_id, plugin_pk=plugin.id, params=params
                    )
                )
                message = f"plugin {plugin_id} enabled in namespace {scope.namespace_id}"
            else:
                row.params = params
                message = f"plugin {plugin_id} was already enabled; parameters updated"
            uri = feature_uri_for(plugin.name, plugin.version)
        return {
            "success": True,
            "plugin_id": plugin_id,
            "namespace_id": scope.namespace_id,
            "feature_uri": uri,
            "message": message,
        }

    def disable(self, scope: PluginScope, plugin_id: str) -> dict[str, Any]:
        assert scope.namespace_id is not None
        with self.db.session() as s:
            plugin = self._org_plugin(s, scope.organization_id, plugin_id)
            row = s.get(NamespacePlugin, (scope.namespace_id, plugin.id))
            if row is not None:
                s.delete(row)
            s.expunge(plugin)
        removed = self.hooks.remove(plugin, scope.namespace_id) if row is not None else False
        if row is not None:
            self.hooks.plugin_removed(plugin.id, deleted=False)
        if row is None:
            message = f"plugin {plugin_id} was not enabled in namespace {scope.namespace_id}"
        else:
            message = f"plugin {plugin_id} disabled in namespace {scope.namespace_id}" + (
                " and its deployment removed" if removed else ""
            )
        return {
            "success": True,
            "plugin_id": plugin_id,
            "namespace_id": scope.namespace_id,
            "message": message,
        }
