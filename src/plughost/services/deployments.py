"""Deployment use cases: deploy, status, undeploy, rollback, realtime test and inference."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, TypeVar

import orjson

from plughost.backends.base import CallFailed, Unavailable
from plughost.config import Settings
from plughost.control.controller import Controller, PluginRuntimeInfo
from plughost.domain.ids import (
    alias_route_for,
    deployment_name_for,
    feature_uri_for,
    normalize_version,
    parse_feature_uri,
    plugin_id_for,
    route_prefix_for,
)
from plughost.domain.release import ReleaseView
from plughost.domain.rollout import RolloutOptions
from plughost.domain.scope import PluginScope
from plughost.domain.states import ROLLING, Status, wire_status
from plughost.errors import (
    BadRequestError,
    NotFoundError,
    PluginRuntimeError,
    ServiceUnavailableError,
)
from plughost.metrics.requests import RequestMetrics
from plughost.metrics.window import RecentWindow
from plughost.persistence.db import Database, read_retrying
from plughost.persistence.releases import Releases
from plughost.persistence.tables import Plugin
from plughost.routing.table import Route, RouteTable
from plughost.services.plugins import DeployState, find_plugin
from plughost.timeutil import iso, utcnow

RESTORING_MESSAGE = (
    "being restored after a server start: its replicas are starting; calls wait for them"
)


class _NotCached(Exception):
    """Raised inside a memory-only status read when something must come from the database."""


T = TypeVar("T")
RECENT_EXIT_S = 600.0  # a replaced replica's end shows in the status message this long


def _memory_or_load(hit: T | None, load: Callable[[], T], cached_only: bool) -> T:
    """What memory holds (the release board, the plugin lookups), else ``load()`` (which reads
    the database and fills it), or _NotCached when only memory may be read."""
    if hit is not None:
        return hit
    if cached_only:
        raise _NotCached
    return load()


@dataclass(frozen=True)
class PluginRef:
    pk: int
    plugin_id: str
    name: str
    version: str
    has_realtime: bool


class Deployments:
    """API-facing deployment use cases; the Controller does the actual work."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        releases: Releases,
        controller: Controller,
        routes: RouteTable,
        *,
        clock: Callable[[], float] = perf_counter,
    ) -> None:
        self.settings = settings
        self.clock = clock  # times each call for the latency figures
        self.db = db
        self.releases = releases
        self.controller = controller
        self.routes = routes
        self.loop: asyncio.AbstractEventLoop | None = None
        # (organization_id, namespace_id, plugin_id) -> the plugin, for status polls
        self._refs: dict[tuple[str, str | None, str], PluginRef] = {}
        self._refs_generation = 0  # bumped by every removal: a lookup that raced one is not kept
        self._refs_lock = threading.Lock()
        self.request_metrics = RequestMetrics()  # counted per call (plughost.metrics)
        self.recent = RecentWindow()  # the last minute's figures in the status (issue 17)

    # -- helpers ------------------------------------------------------------------------------
    def _plugin(self, scope: PluginScope, plugin_id: str) -> tuple[PluginRef, Plugin]:
        generation = self._refs_generation
        with self.db.session() as s:
            p = find_plugin(s, scope, plugin_id)
            s.expunge(p)
            ref = PluginRef(p.id, p.plugin_id, p.name, p.version, p.has_realtime)
        with self._refs_lock:
            if generation == self._refs_generation:  # no plugin was removed while we read
                self._refs[(scope.organization_id, scope.namespace_id, plugin_id)] = ref
        return ref, p

    def _plugin_ref(self, scope: PluginScope, plugin_id: str, cached_only: bool) -> PluginRef:
        """The plugin as status needs it: from the lookup cache, else (unless cached_only)
        from the database. Plugins are immutable once registered; deletion and disabling
        drop cached lookups through :meth:`plugin_removed`."""
        return _memory_or_load(
            self._refs.get((scope.organization_id, scope.namespace_id, plugin_id)),
            lambda: self._plugin(scope, plugin_id)[0],
            cached_only,
        )

    def plugin_info(self, plugin_pk: int) -> PluginRuntimeInfo | None:
        with self.db.session() as s:
            p = s.get(Plugin, plugin_pk)
            if p is None:
                return None
            return PluginRuntimeInfo(storage_key=p.storage_key, manifest=dict(p.manifest or {}))

    def estimate_seconds(self, name: str, cached_only: bool = False) -> int:
        """Median of recent deployment durations of this plugin name, else of the server."""
        durations = self._durations(name, cached_only) or self._durations(None, cached_only)
        if not durations:
            return self.settings.default_deploy_eta_s
        return max(1, round(statistics.median(durations)))

    def _durations(self, name: str | None, cached_only: bool) -> tuple[float, ...]:
        return _memory_or_load(
            self.releases.board.durations(name),
            lambda: self.releases.recent_durations_now(name),
            cached_only,
        )

    def _queue_position(self, release_id: int, cached_only: bool) -> int:
        return _memory_or_load(
            self.releases.board.queue_position(release_id),
            lambda: self.releases.queue_position_now(release_id),
            cached_only,
        )

    def _eta(self, rel: ReleaseView, cached_only: bool = False) -> int | None:
        """Seconds until ``rel`` is likely deployed; ``queue_position`` of a queued release."""
        if rel.status is Status.DEPLOYED:  # before the estimate: most polls end here
            return 0
        if rel.status is not Status.QUEUED and rel.status not in ROLLING:
            return None
        per = self.estimate_seconds(rel.name, cached_only)
        if rel.status is Status.QUEUED:
            ahead = self._queue_position(rel.id, cached_only) - 1
            waves = ahead // max(1, self.settings.max_concurrent_deployments)
            return per * (waves + 1)
        # rolling out
        building = self.controller.envs.build_seconds_left(rel.id)
        if building is not None:  # the environment's build, then the usual start
            return max(1, round(building + per))
        started = rel.started_at or rel.queued_at
        elapsed = (utcnow() - started).total_seconds()
        return max(1, round(per - elapsed))

    # -- deploy -------------------------------------------------------------------------------
    def deploy(
        self,
        scope: PluginScope,
        plugin_id: str,
        deployment_type: str | None,
        rollout: RolloutOptions | None = None,
    ) -> dict[str, Any]:
        assert scope.namespace_id is not None
        ref, plugin = self._plugin(scope, plugin_id)
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
            "estimated_completion_seconds": self._eta(rel) or self.estimate_seconds(ref.name),
            "queue_position": self._queue_position(rel.id, cached_only=False),
            "deployment_method": RolloutOptions.from_json(rel.rollout).strategy,
            "status_endpoint": f"/v1/namespaces/{scope.namespace_id}/plugins/{ref.plugin_id}/status",
        }

    def _wake(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.controller.wake)

    # -- status -------------------------------------------------------------------------------
    def status(self, scope: PluginScope, plugin_id: str) -> dict[str, Any]:
        """The status body; reads the database only for what the in-memory board lacks (again,
        if SQLite answered busy: a poll is a read)."""
        return read_retrying(self._status, scope, plugin_id, False)

    def cached_status(self, scope: PluginScope, plugin_id: str) -> dict[str, Any] | None:
        """The status body from memory alone (safe on the event loop), or None on a miss."""
        try:
            return self._status(scope, plugin_id, cached_only=True)
        except _NotCached:
            return None

    def _status(self, scope: PluginScope, plugin_id: str, cached_only: bool) -> dict[str, Any]:
        namespace_id = scope.namespace_id
        assert namespace_id is not None
        ref = self._plugin_ref(scope, plugin_id, cached_only)
        releases = _memory_or_load(
            self.releases.board.plugin((namespace_id, ref.pk)),
            lambda: self.releases.plugin_releases(namespace_id, ref.pk),
            cached_only,
        )
        latest, serving = releases.latest, releases.deployed
        restoring = bool(serving) and self._restoring(namespace_id, ref.plugin_id)
        if restoring:
            serving = ()
        body: dict[str, Any] = {
            "plugin_id": ref.plugin_id,
            "namespace_id": namespace_id,
            "name": ref.name,
            "version": ref.version,
            "realtime_enabled": ref.has_realtime,
            "feature_uri": feature_uri_for(ref.name, ref.version),
            "deployed": bool(serving),
        }
        if latest is None:
            msg = (
                "Plugin has never been deployed."
                if ref.has_realtime
                else "Plugin has no realtime.py: batch only."
            )
            return {**body, "status": Status.NOT_DEPLOYED.value, "message": msg}
        body.update(
            status=wire_status(latest.status),
            message=latest.message,
            queued_at=iso(latest.queued_at),
            started_at=iso(latest.started_at),
            estimated_completion_seconds=self._eta(latest, cached_only),
            error=latest.error,
            release_id=latest.id,
        )
        if restoring and latest.status is Status.DEPLOYED:
            body.update(status=wire_status(Status.IN_PROGRESS), message=RESTORING_MESSAGE)
        if serving:
            body["deployed_at"] = iso(serving[-1].deployed_at)
            body["route_prefix"] = route_prefix_for(namespace_id, ref.plugin_id)
            body["alias_route"] = alias_route_for(namespace_id, ref.name)
        elif restoring or latest.status in (Status.QUEUED, *ROLLING):
            body["route_prefix"] = route_prefix_for(namespace_id, ref.plugin_id)
        if latest.status is Status.QUEUED:
            body["queue_position"] = self._queue_position(latest.id, cached_only)
        body["traffic"] = self._traffic(latest.id)
        body["replicas"] = self._replicas(latest.id, *(r.id for r in reversed(serving)))
        if latest.status is Status.DEPLOYED:
            body["message"] = self._at_zero_message(latest.id) or _with_note(
                body["message"], self._replica_note(latest.id)
            )
        return {k: v for k, v in body.items() if v is not None}

    def _at_zero_message(self, release_id: int) -> str | None:
        """For a release scaled to zero (serve_config min_replicas 0): says so, with the
        expected cold start learned from its starts."""
        scaler = getattr(self.controller.groups.get(release_id), "autoscaler", None)
        if scaler is None or not scaler.at_zero:
            return None
        cold = scaler.cold_start_s()
        expect = f"about {cold:.2f} s" if cold is not None else "not measured yet"
        return (
            "scaled to zero (no replica after an idle period); the next call starts one and "
            f"waits for it: expected cold start {expect}"
        )

    def _replica_note(self, release_id: int) -> str | None:
        """What a deployed release's replicas went through lately (local backend): the
        autoscaler's memory cap, or how the last replaced replica ended (its memory limit when
        it ran out), for :data:`RECENT_EXIT_S`."""
        group = self.controller.groups.get(release_id)
        scaler = getattr(group, "autoscaler", None)
        if scaler is not None and scaler.note:
            return str(scaler.note)
        last = getattr(group, "last_exit", None)
        if last is None or time.time() - last[0] > RECENT_EXIT_S:
            return None
        ago = time.time() - last[0]
        return f"a replica was replaced {ago:.0f} s ago ({last[1]})"

    def _replicas(self, *release_ids: int) -> dict[str, int] | None:
        """Ready, starting and target replicas of the first of ``release_ids`` this server
        runs (ours)."""
        for rid in release_ids:
            group = self.controller.groups.get(rid)
            if group is not None:
                health = group.observe()
                target = int(getattr(group, "target", health.desired))
                starting = int(getattr(group, "starting", max(0, target - health.ready)))
                return {"ready": health.ready, "starting": starting, "target": target}
        return None

    def _restoring(self, namespace_id: str, plugin_id: str) -> bool:
        """True while the plugin, deployed in the table, has no route on this server yet:
        after a server start, until its replicas are back and answer (issue 14)."""
        return self.routes.lookup(namespace_id, deployment_name_for(plugin_id)) is None

    def _traffic(self, release_id: int) -> dict[str, Any] | None:
        """The release's calls, failed calls and p50/p99 over the last minute (ours)."""
        stats = self.request_metrics.of_release(release_id)
        return None if stats is None else self.recent.figures(stats).to_json()

    # -- undeploy and removal -------------------------------------------------------------------
    async def undeploy(self, scope: PluginScope, plugin_id: str) -> dict[str, Any]:
        assert scope.namespace_id is not None
        ref, _ = await asyncio.to_thread(self._plugin, scope, plugin_id)
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
        with self._refs_lock:
            self._refs_generation += 1
            for key in [k for k, ref in self._refs.items() if ref.pk == plugin_pk]:
                del self._refs[key]
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

    # -- inference ----------------------------------------------------------------------------
    async def infer_json(
        self, namespace_id: str, route_name: str, inputs: dict[str, Any], parameters: dict[str, Any]
    ) -> bytes:
        """Call the plugin behind a route; returns the plugin's result as JSON bytes."""
        payload = {"inputs": inputs, "parameters": parameters}
        try:
            body = orjson.dumps(payload)
        except orjson.JSONEncodeError:
            # an integer past 64 bits (FastAPI's parser keeps it whole): write its digits;
            # the replica reads it as a float, as it does on the inference route
            try:
                body = json.dumps(payload, allow_nan=False).encode()
            except ValueError as exc:
                raise BadRequestError(f"inputs and parameters must be plain JSON: {exc}") from exc
        return await self.infer_body(namespace_id, route_name, body)

    async def infer_body(self, namespace_id: str, route_name: str, body: bytes) -> bytes:
        """The fast path: a checked `{"inputs", "parameters"}` body straight to a replica."""
        route = self.routes.lookup(namespace_id, route_name)
        if route is None:
            route = await self._held_route(namespace_id, route_name)
        if route is None:
            raise NotFoundError(
                f"no deployed plugin answers /inference/{namespace_id}/{route_name}",
                {"namespace_id": namespace_id, "route": route_name})
        route = route.pick()  # a canary step's weighted choice
        stats = self.request_metrics.for_route(route)
        stats.in_flight += 1
        started = self.clock()
        try:
            return await route.group.call_body(body)
        except CallFailed as exc:
            stats.errors += 1
            raise PluginRuntimeError(
                f"plugin raised {exc.type_name}: {exc.message}",
                {"plugin_id": route.plugin_id, "exception_type": exc.type_name}) from exc
        except Unavailable as exc:
            stats.errors += 1
            raise ServiceUnavailableError(
                f"plugin {route.plugin_id} is unavailable: {exc}",
                {"plugin_id": route.plugin_id},
                exc.retry_after_s,  # a start from zero under way: Retry-After
            ) from exc
        finally:
            stats.in_flight -= 1
            stats.observe(self.clock() - started)

    async def _held_route(self, namespace_id: str, route_name: str) -> Route | None:
        """The route once its release is restored after a server start (issue 14): the call
        waits up to ``restore_hold_s``; None when nothing restores it (a real 404)."""

        def published() -> bool:
            return self.routes.lookup(namespace_id, route_name) is not None

        held = await self.controller.restores.hold(
            namespace_id, route_name, self.settings.restore_hold_s, published
        )
        return self.routes.lookup(namespace_id, route_name) if held else None

    def resolve_inference_name(
        self, namespace_id: str, inference_name: str | None, feature_uri: str | None
    ) -> str:
        if inference_name:
            return inference_name
        if feature_uri:
            name, version = parse_feature_uri(feature_uri)
            return plugin_id_for(name, version)
        raise BadRequestError("give inference_name (deployment name or plugin id) or feature_uri")

    async def realtime_test(
        self, scope: PluginScope, plugin_id: str, inputs: dict[str, Any], parameters: dict[str, Any]
    ) -> dict[str, Any]:
        assert scope.namespace_id is not None
        ref, _ = await asyncio.to_thread(self._plugin, scope, plugin_id)
        dname = deployment_name_for(ref.plugin_id)
        if self.routes.lookup(scope.namespace_id, dname) is None:
            raise ServiceUnavailableError(
                f"plugin {ref.plugin_id} is not deployed for realtime inference in "
                f"{scope.namespace_id!r}; deploy it first"
            )
        try:
            raw = await self.infer_json(scope.namespace_id, dname, inputs, parameters)
        except PluginRuntimeError as exc:
            return {
                "status": "error",
                "inference_name": dname,
                "error": exc.message,
                "message": "the plugin raised an exception",
            }
        value = orjson.loads(raw)
        return {
            "status": "success",
            "inference_name": dname,
            "raw_response": value,
            "response_type": _python_type_name(value),
            "response_keys": list(value.keys()) if isinstance(value, dict) else None,
            "message": "realtime inference succeeded",
        }


def _with_note(message: str | None, note: str | None) -> str | None:
    if not note:
        return message
    return f"{message}; {note}" if message else note


def _python_type_name(value: Any) -> str:
    return type(value).__name__
