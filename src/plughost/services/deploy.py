"""Deployment commands: deploy, undeploy, rollback, and the registry's hooks (take a plugin
down, is it serving). Each command records desired state; the controller reconciles it.

A deploy is refused (409 QuotaExceededError) when it would take the namespace past its
``max_replicas`` or ``max_memory_mb`` (plughost.services.policies). Counted: every other
plugin of the namespace with a live release (queued, starting or deployed), each at its
serve_config's starting replicas (``num_replicas``, else ``min_replicas``, else 1; a release
that scales to zero reserves one) times its ``memory_gb`` (else the server's default). A new
release of the same plugin replaces the one it supersedes, so it is counted instead of it,
not beside it: a namespace at its quota can still roll out a plugin's next build, and runs
both groups only while the old one drains. Deployed versions of one name are different
plugins and count apart (both keep their replicas for a rollback). The local autoscaler
clamps its scale-ups to the same quotas (plughost.backends.local.autoscale); Ray Serve's
autoscaler knows no quota, so on the Ray backend an autoscaling release counts at its
``max_replicas``."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from plughost.config import Settings
from plughost.control.controller import Controller
from plughost.control.launch import replica_count
from plughost.domain.ids import (
    alias_route_for,
    deployment_name_for,
    normalize_version,
    route_prefix_for,
)
from plughost.domain.quotas import Demand, capacity_error, demand_of, unclamped_ceiling
from plughost.domain.rollout import RolloutOptions
from plughost.domain.scope import PluginScope
from plughost.domain.states import ROLLING, Status
from plughost.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from plughost.persistence.releases import Releases
from plughost.persistence.tables import Plugin
from plughost.services.lookup import PluginLookup
from plughost.services.plugins import DeployState
from plughost.services.status import DeploymentStatus

if TYPE_CHECKING:
    from plughost.services.policies import PolicyBook

LIVE = frozenset({Status.QUEUED, *ROLLING, Status.DEPLOYED})


class DeployCommands:
    """The deployment commands the API calls; also the registry's DeploymentHooks."""

    def __init__(
        self,
        settings: Settings,
        releases: Releases,
        controller: Controller,
        lookup: PluginLookup,
        status: DeploymentStatus,
        policies: PolicyBook | None = None,
    ) -> None:
        self.settings = settings
        self.releases = releases
        self.controller = controller
        self.lookup = lookup
        self.status = status  # the ETA and queue position a deploy answers with
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, once it runs
        self.policies = policies  # namespace quotas (None: none)
        self._quota_lock = threading.Lock()  # a check and its enqueue, one deploy at a time
        self._demands: dict[int, Demand | None] = {}  # plugin pk -> its demand (immutable)

    # -- deploy -------------------------------------------------------------------------------
    def deploy(
        self,
        scope: PluginScope,
        plugin_id: str,
        deployment_type: str | None,
        rollout: RolloutOptions | None = None,
    ) -> dict[str, Any]:
        assert scope.namespace_id is not None
        ref, plugin = self.lookup.load(scope, plugin_id)
        if deployment_type not in (None, "", "realtime", "batch_only", "batch"):
            raise BadRequestError(
                f"unknown deployment_type {deployment_type!r}: use realtime or batch_only"
            )
        if deployment_type in ("batch_only", "batch") or not ref.has_realtime:
            why = "" if ref.has_realtime else " (the plugin has no realtime.py)"
            return {
                "status": "deployed",
                "deployment_type": "batch_only",
                "plugin_id": ref.plugin_id,
                "message": f"plugin {ref.plugin_id} is available for batch processing{why}; "
                "no realtime endpoint was deployed",
            }
        queued = self.releases.of_plugin(scope.namespace_id, ref.pk, {Status.QUEUED})
        if queued:
            rel, message = queued[0], "a deployment of this plugin is already queued; joined it"
        else:
            rolling = self.releases.of_plugin(scope.namespace_id, ref.pk, set(ROLLING))
            message = (
                "queued behind the rollout already under way"
                if rolling
                else "Plugin is queued for deployment."
            )
            stored = rollout.to_json() if rollout is not None else None
            with self._quota_lock:
                self._check_capacity(scope.namespace_id, plugin)
                rel = self.releases.enqueue(scope.namespace_id, plugin, message, stored)
            self._wake()
        dname = deployment_name_for(ref.plugin_id)
        return {
            "status": Status.QUEUED.value,
            "message": message,
            "plugin_id": ref.plugin_id,
            "deployment_name": dname,
            "route_prefix": route_prefix_for(scope.namespace_id, ref.plugin_id),
            "alias_route": alias_route_for(scope.namespace_id, ref.name),
            "estimated_completion_seconds": (
                self.status.eta(rel) or self.status.estimate_seconds(ref.name)
            ),
            "queue_position": self.status.queue_position(rel.id, cached_only=False),
            "deployment_method": RolloutOptions.from_json(rel.rollout).strategy,
            "status_endpoint": f"/v1/namespaces/{scope.namespace_id}/plugins/{ref.plugin_id}/status",
        }

    def _check_capacity(self, namespace_id: str, plugin: Plugin) -> None:
        """QuotaExceededError (409) when deploying ``plugin`` passes the namespace's replicas
        or memory quota (see the module docstring for what is counted)."""
        if self.policies is None:
            return
        policy = self.policies.policy(namespace_id)
        if policy.max_replicas is None and policy.max_memory_mb is None:
            return
        others: dict[int, Demand] = {}
        for rel in self.releases.with_status(LIVE):
            if rel.namespace_id == namespace_id and rel.plugin_pk != plugin.id:
                demand = self._demand(rel.plugin_pk)
                if demand is not None:
                    others[rel.plugin_pk] = demand
        adding = self._demand(plugin.id, dict(plugin.manifest or {}))
        assert adding is not None
        error = capacity_error(policy, list(others.values()), adding)
        if error is not None:
            self.policies.refused_deploy(namespace_id, str((error.details or {})["quota"]))
            raise error

    def _demand(self, plugin_pk: int, manifest: dict[str, Any] | None = None) -> Demand | None:
        """The replicas and memory a release of the plugin starts with (None: deleted)."""
        if plugin_pk in self._demands:
            return self._demands[plugin_pk]
        if manifest is None:
            info = self.lookup.info(plugin_pk)
            manifest = info.manifest if info is not None else None
        if manifest is None:
            return None
        serve_config = manifest.get("serve_config") or {}
        if not isinstance(serve_config, dict):
            serve_config = {}
        count = replica_count(serve_config)
        if self.settings.backend == "ray":  # Serve's autoscaler may reach max_replicas
            count = unclamped_ceiling(serve_config, count)
        demand = demand_of(count, serve_config, self.settings.sandbox_memory_gb)
        self._demands[plugin_pk] = demand
        return demand

    def _wake(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.controller.wake)

    # -- undeploy and removal -------------------------------------------------------------------
    async def undeploy(self, scope: PluginScope, plugin_id: str) -> dict[str, Any]:
        assert scope.namespace_id is not None
        ref, _ = await asyncio.to_thread(self.lookup.load, scope, plugin_id)
        removed = await self.take_down(scope.namespace_id, ref.pk)
        return {
            "success": True,
            "plugin_id": ref.plugin_id,
            "status": Status.NOT_DEPLOYED.value,
            "deployment_removed": removed,
            "message": (
                f"plugin {ref.plugin_id} undeployed; its replicas drained and stopped"
                if removed
                else f"plugin {ref.plugin_id} had no live deployment"
            ),
        }

    async def take_down(self, namespace_id: str, plugin_pk: int) -> bool:
        """Undeploy, delete and disable: record the desired state (the plugin's releases in
        the namespace not deployed, its aliases moved on; one transaction with the events),
        then let the controller reconcile it and wait until their replicas drained and
        stopped. True when a deployed release was taken down."""
        moved = await asyncio.to_thread(self.releases.undeploy, namespace_id, plugin_pk)
        async with asyncio.timeout(self.settings.drain_timeout_s + 60):
            await self.controller.converge([view.id for _, view in moved])
        return any(before is Status.DEPLOYED for before, _ in moved)

    def plugin_removed(self, plugin_pk: int, deleted: bool) -> None:
        """DeploymentHooks: the plugin was deleted, or disabled in a namespace; forget cached
        lookups of it (and, when deleted, its releases, which the database dropped)."""
        self.lookup.forget(plugin_pk)
        if deleted:
            self.releases.forget_plugin(plugin_pk)

    def state(self, plugin: Plugin, namespace_id: str | None) -> DeployState:
        """DeploymentHooks: is the plugin serving in the namespace?"""
        if namespace_id is None:
            return DeployState(deployed=False)
        serving = self.releases.of_plugin(namespace_id, plugin.id, {Status.DEPLOYED})
        if not serving:
            return DeployState(deployed=False)
        return DeployState(True, serving[-1].deployed_at, deployment_name_for(plugin.plugin_id))

    def serving_plugins(self, namespace_id: str | None) -> set[int]:
        """DeploymentHooks: plugins with a deployed release in the namespace."""
        if namespace_id is None:
            return set()
        return self.releases.serving_plugin_pks(namespace_id)

    def remove(self, plugin: Plugin, namespace_id: str | None) -> bool:
        """DeploymentHooks: take the plugin down (called from a worker thread)."""
        if self.loop is None:
            return False
        namespaces = [namespace_id] if namespace_id else self._namespaces_of(plugin.id)
        removed = False
        for ns in namespaces:
            fut = asyncio.run_coroutine_threadsafe(self.take_down(ns, plugin.id), self.loop)
            removed = fut.result(timeout=self.settings.drain_timeout_s + 90) or removed
        return removed

    def _namespaces_of(self, plugin_pk: int) -> list[str]:
        rows = self.releases.with_status({Status.QUEUED, *ROLLING, Status.DEPLOYED})
        return sorted({r.namespace_id for r in rows if r.plugin_pk == plugin_pk})

    # -- rollback -----------------------------------------------------------------------------
    async def rollback(self, namespace_id: str, name: str, version: str) -> dict[str, Any]:
        version = normalize_version(version)
        deployed = await asyncio.to_thread(self.releases.deployed_of_name, namespace_id, name)
        target = next((r for r in deployed if r.version == version), None)
        if target is None:
            raise NotFoundError(
                f"{name}@{version} is not deployed in namespace {namespace_id!r}; "
                "rollback switches between deployed versions"
            )
        previous_id = await asyncio.to_thread(self.releases.alias, namespace_id, name)
        previous = next((r.version for r in deployed if r.id == previous_id), None)
        if not self.controller.serving(target.id):
            raise ServiceUnavailableError(f"{target.plugin_id} is not serving on this server")
        # desired state first (the alias row and its AliasMove, one transaction), then the
        # controller points the alias route at it
        await asyncio.to_thread(
            self.releases.set_alias, namespace_id, name, target.id, "rollback"
        )
        await self.controller.converge()
        return {
            "success": True,
            "slug": name,
            "previous_version": previous,
            "active_version": version,
            "namespace_id": namespace_id,
            "message": f"{alias_route_for(namespace_id, name)} now reaches {name}@{version}",
        }
