"""Per-release request counters on the inference path.

One :class:`RequestStats` per serving release, found by a dict lookup; counting a call is a
few integer updates and a bisect into the latency buckets. Only the event loop writes them
(the inference path runs there), so no lock is taken; a scrape reads them from a worker
thread and may see a call counted in one field but not yet in the next, which Prometheus
tolerates (the next scrape is consistent again).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

# Ray Serve's processing-latency buckets (ms), with finer steps below 5 ms where plughost's
# own overhead lives.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000,
)

BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class DeploymentLabels:
    namespace: str
    plugin: str  # plugin name
    version: str
    deployment: str  # custom_plugin_{plugin_id}
    plugin_id: str


@dataclass(eq=False)
class RequestStats:
    labels: DeploymentLabels
    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    latency_sum_ms: float = 0.0
    # counts per bucket (not cumulative); the last one is +Inf
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    timeouts: int = 0  # calls past their deadline (504)
    cancellations: int = 0  # calls cancelled because their client went away
    batches: int = 0  # micro-batches that answered calls of this release
    batch_size_sum: int = 0
    batch_buckets: list[int] = field(default_factory=lambda: [0] * (len(BATCH_SIZE_BUCKETS) + 1))

    def observe(self, seconds: float) -> None:
        ms = seconds * 1000.0
        self.requests += 1
        self.latency_sum_ms += ms
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, ms)] += 1

    def observe_batch(self, size: int) -> None:
        """One micro-batch of ``size`` calls answered."""
        self.batches += 1
        self.batch_size_sum += size
        self.batch_buckets[bisect.bisect_left(BATCH_SIZE_BUCKETS, size)] += 1

    @property
    def mean_batch_size(self) -> float | None:
        return self.batch_size_sum / self.batches if self.batches else None


class RequestMetrics:
    """Request counters by plugin id and namespace; a release finds its counters by id.

    Counters are kept per (namespace, plugin id), not per release, so a redeploy of the same
    version keeps counting on the same series (Prometheus counters must not go back)."""

    def __init__(self) -> None:
        self.by_plugin: dict[tuple[str, str], RequestStats] = {}
        self._by_release: dict[int, RequestStats] = {}

    def for_route(self, route: Any) -> RequestStats:
        """The counters of a :class:`~plughost.dataplane.routes.Route`'s release (a dict hit
        after its first call)."""
        found = self._by_release.get(route.release_id)
        if found is not None:
            return found
        return self.stats(route.release_id, DeploymentLabels(
            route.namespace_id, route.name, route.version,
            f"custom_plugin_{route.plugin_id}", route.plugin_id))

    def of_release(self, release_id: int) -> RequestStats | None:
        """The counters a release has used, if it took a call or was watched."""
        return self._by_release.get(release_id)

    def stats(self, release_id: int, labels: DeploymentLabels) -> RequestStats:
        found = self._by_release.get(release_id)
        if found is None:
            key = (labels.namespace, labels.plugin_id)
            found = self.by_plugin.get(key)
            if found is None:
                found = self.by_plugin[key] = RequestStats(labels)
            self._by_release[release_id] = found
        return found
