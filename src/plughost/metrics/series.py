"""Recent figures per deployment for the dashboard, sampled every few seconds, and the
replica counts (restarts included) that /metrics reports.

Restarts are the group's own count of replicas that ended without being asked to and were
replaced (its snapshot's ``restarts``): the replicas an autoscaler adds or retires, and a
scale to zero and back, are not restarts. (Ray groups keep no such count; theirs read 0.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from plughost.metrics.collector import ReplicaFigures
from plughost.metrics.requests import LATENCY_BUCKETS_MS, RequestMetrics

SAMPLE_EVERY_S = 5.0
SAMPLES_KEPT = 60


@dataclass(frozen=True)
class Sample:
    time: float
    requests_per_s: float
    errors_per_s: float
    p50_ms: float | None
    p99_ms: float | None


class Sampler:
    """Samples request counters and replica groups; see the module docstring."""

    def __init__(
        self, requests: RequestMetrics, controller: Any, routes: Any, recent: Any = None
    ) -> None:
        self.requests = requests
        self.controller = controller
        self.routes = routes
        self.series: dict[tuple[str, str], deque[Sample]] = {}
        self._last: dict[tuple[str, str], tuple[float, int, int, list[int]]] = {}
        self.recent = recent  # a metrics.window.RecentWindow to feed (the status figures)

    async def run(self, every_s: float = SAMPLE_EVERY_S) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.sample()
            await asyncio.sleep(every_s)

    def sample(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for key, stats in list(self.requests.by_plugin.items()):
            if self.recent is not None:
                self.recent.record(stats)
            current = (now, stats.requests, stats.errors, list(stats.buckets))
            last = self._last.get(key)
            self._last[key] = current
            if last is None:
                continue
            elapsed = max(1e-6, now - last[0])
            delta = [a - b for a, b in zip(current[3], last[3], strict=True)]
            self.series.setdefault(key, deque(maxlen=SAMPLES_KEPT)).append(Sample(
                now, (current[1] - last[1]) / elapsed, (current[2] - last[2]) / elapsed,
                quantile(delta, 0.5), quantile(delta, 0.99)))
        self.replica_figures()

    def replica_figures(self) -> list[ReplicaFigures]:
        """Desired, ready and restarted replicas of every group the controller holds."""
        figures = []
        for group in list(self.controller.groups.values()):
            snap = group.snapshot()
            figures.append(
                ReplicaFigures(self._labels(group), snap.target, snap.ready, snap.restarts)
            )
        return figures

    def group_figures(self, release_id: int) -> dict[str, int] | None:
        group = self.controller.groups.get(release_id)
        if group is None:
            return None
        for fig in self.replica_figures():
            if fig.labels == self._labels(group):
                return {"desired": fig.desired, "ready": fig.ready, "restarts": fig.restarts}
        return None

    def _labels(self, group: Any) -> list[str]:
        spec = group.spec
        route = self.routes.lookup(spec.namespace_id or "", spec.deployment_name)
        name = route.name if route is not None else ""
        version = route.version if route is not None else ""
        return [spec.namespace_id or "", name, version, spec.deployment_name]


def quantile(counts: list[int], q: float) -> float | None:
    """The q-quantile (ms) of a latency histogram's bucket counts, interpolated linearly
    inside its bucket; None without observations."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for i, count in enumerate(counts):
        upper = LATENCY_BUCKETS_MS[i] if i < len(LATENCY_BUCKETS_MS) else LATENCY_BUCKETS_MS[-1]
        if count and seen + count >= rank:
            return round(lower + (upper - lower) * (rank - seen) / count, 3)
        seen += count
        lower = upper
    return LATENCY_BUCKETS_MS[-1]

