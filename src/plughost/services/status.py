"""Deployment queries: a plugin's status body (what clients poll while a deployment runs),
and the ETA of a release. Memory answers first (the release board, the plugin lookups, the
controller's groups, the request counters); the database only fills what memory lacks."""

from __future__ import annotations

import statistics
import time
from typing import Any

from plughost.backends.base import GroupSnapshot
from plughost.config import Settings
from plughost.control.controller import Controller
from plughost.dataplane.routes import RouteTable
from plughost.domain.ids import (
    alias_route_for,
    deployment_name_for,
    feature_uri_for,
    route_prefix_for,
)
from plughost.domain.release import ReleaseView
from plughost.domain.scope import PluginScope
from plughost.domain.states import ROLLING, Status, wire_status
from plughost.metrics.requests import RequestMetrics
from plughost.metrics.window import RecentWindow
from plughost.persistence.db import read_retrying
from plughost.persistence.releases import Releases
from plughost.services.cache import NotCached, memory_or_load
from plughost.services.lookup import PluginLookup
from plughost.timeutil import iso, utcnow

RESTORING_MESSAGE = (
    "being restored after a server start: its replicas are starting; calls wait for them"
)
RECENT_EXIT_S = 600.0  # a replaced replica's end shows in the status message this long


class DeploymentStatus:
    """Read-only answers about deployments; never changes state."""

    def __init__(
        self,
        settings: Settings,
        releases: Releases,
        controller: Controller,
        routes: RouteTable,
        lookup: PluginLookup,
        request_metrics: RequestMetrics,
        recent: RecentWindow,
    ) -> None:
        self.settings = settings
        self.releases = releases
        self.controller = controller
        self.routes = routes
        self.lookup = lookup
        self.request_metrics = request_metrics  # counted per call by the data plane
        self.recent = recent  # the last minute's figures in the status

    # -- ETA ----------------------------------------------------------------------------------
    def estimate_seconds(self, name: str, cached_only: bool = False) -> int:
        """Median of recent deployment durations of this plugin name, else of the server."""
        durations = self._durations(name, cached_only) or self._durations(None, cached_only)
        if not durations:
            return self.settings.default_deploy_eta_s
        return max(1, round(statistics.median(durations)))

    def _durations(self, name: str | None, cached_only: bool) -> tuple[float, ...]:
        return memory_or_load(
            self.releases.board.durations(name),
            lambda: self.releases.recent_durations_now(name),
            cached_only,
        )

    def queue_position(self, release_id: int, cached_only: bool) -> int:
        """1 for the next queued release to start, 2 for the one after it, and so on."""
        return memory_or_load(
            self.releases.board.queue_position(release_id),
            lambda: self.releases.queue_position_now(release_id),
            cached_only,
        )

    def eta(self, rel: ReleaseView, cached_only: bool = False) -> int | None:
        """Seconds until ``rel`` is likely deployed (0 once it is); None when it is not on its
        way (failed, stopped...)."""
        if rel.status is Status.DEPLOYED:  # before the estimate: most polls end here
            return 0
        if rel.status is not Status.QUEUED and rel.status not in ROLLING:
            return None
        per = self.estimate_seconds(rel.name, cached_only)
        if rel.status is Status.QUEUED:
            ahead = self.queue_position(rel.id, cached_only) - 1
            waves = ahead // max(1, self.settings.max_concurrent_deployments)
            return per * (waves + 1)
        # rolling out
        building = self.controller.envs.build_seconds_left(rel.id)
        if building is not None:  # the environment's build, then the usual start
            return max(1, round(building + per))
        started = rel.started_at or rel.queued_at
        elapsed = (utcnow() - started).total_seconds()
        return max(1, round(per - elapsed))

    # -- status -------------------------------------------------------------------------------
    def status(self, scope: PluginScope, plugin_id: str) -> dict[str, Any]:
        """The status body; reads the database only for what the in-memory board lacks (again,
        if SQLite answered busy: a poll is a read)."""
        return read_retrying(self._status, scope, plugin_id, False)

    def cached_status(self, scope: PluginScope, plugin_id: str) -> dict[str, Any] | None:
        """The status body from memory alone (safe on the event loop), or None on a miss."""
        try:
            return self._status(scope, plugin_id, cached_only=True)
        except NotCached:
            return None

    def _status(self, scope: PluginScope, plugin_id: str, cached_only: bool) -> dict[str, Any]:
        namespace_id = scope.namespace_id
        assert namespace_id is not None
        ref = self.lookup.ref(scope, plugin_id, cached_only)
        releases = memory_or_load(
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
            estimated_completion_seconds=self.eta(latest, cached_only),
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
            body["queue_position"] = self.queue_position(latest.id, cached_only)
        body["traffic"] = self._traffic(latest.id)
        body["batching"] = self._batching(latest.id)
        group_id, snap = self._snapshot(latest.id, *(r.id for r in reversed(serving)))
        if snap is not None:
            body["replicas"] = {"ready": snap.ready, "starting": snap.starting, "target": snap.target}
        if latest.status is Status.DEPLOYED:
            mine = snap if group_id == latest.id else None  # the notes are of the latest only
            body["message"] = _at_zero_message(mine) or _with_note(
                body["message"], _replica_note(mine)
            )
        return {k: v for k, v in body.items() if v is not None}

    def _snapshot(self, *release_ids: int) -> tuple[int | None, GroupSnapshot | None]:
        """The first of ``release_ids`` whose group this server runs (ours), with one
        snapshot of it: a poll reads the group once."""
        groups = self.controller.groups
        for rid in release_ids:
            group = groups.get(rid)
            if group is not None:
                return rid, group.snapshot()
        return None, None

    def _restoring(self, namespace_id: str, plugin_id: str) -> bool:
        """True while the plugin, deployed in the table, has no route on this server yet:
        after a server start, until its replicas are back and answer."""
        return self.routes.lookup(namespace_id, deployment_name_for(plugin_id)) is None

    def _batching(self, release_id: int) -> dict[str, Any] | None:
        """The release's micro-batches so far (ours): how many, and their mean size; None
        before its first batch."""
        stats = self.request_metrics.of_release(release_id)
        mean = None if stats is None else stats.mean_batch_size
        if stats is None or mean is None:
            return None
        return {"batches": stats.batches, "mean_batch_size": round(mean, 2)}

    def _traffic(self, release_id: int) -> dict[str, Any] | None:
        """The release's calls, failed calls and p50/p99 over the last minute (ours)."""
        stats = self.request_metrics.of_release(release_id)
        return None if stats is None else self.recent.figures(stats).to_json()


def _at_zero_message(snap: GroupSnapshot | None) -> str | None:
    """For a release scaled to zero (serve_config min_replicas 0): says so, with the
    expected cold start learned from its starts."""
    if snap is None or not snap.at_zero:
        return None
    cold = snap.cold_start_s
    expect = f"about {cold:.2f} s" if cold is not None else "not measured yet"
    return (
        "scaled to zero (no replica after an idle period); the next call starts one and "
        f"waits for it: expected cold start {expect}"
    )


def _replica_note(snap: GroupSnapshot | None) -> str | None:
    """What a deployed release's replicas went through lately (local backend): the
    autoscaler's memory cap, or how the last replaced replica ended (its memory limit when
    it ran out), for :data:`RECENT_EXIT_S`."""
    if snap is None:
        return None
    if snap.note:
        return snap.note
    last = snap.last_exit
    if last is None:
        return None
    ago = time.time() - last[0]
    return None if ago > RECENT_EXIT_S else f"a replica was replaced {ago:.0f} s ago ({last[1]})"


def _with_note(message: str | None, note: str | None) -> str | None:
    if not note:
        return message
    return f"{message}; {note}" if message else note
