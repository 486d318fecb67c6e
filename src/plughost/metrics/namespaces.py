"""Per-namespace families of ``/metrics`` (issue 28: quotas), labelled ``namespace``:

- ``plughost_namespace_request_counter``: inference calls that reached a plugin (the sum of
  the namespace's deployments' counters, so the request path counts nothing more);
- ``plughost_namespace_quota_rejections``: requests a namespace quota refused, by ``quota``
  (``requests_per_second``, ``key_requests_per_second``: 429; ``max_batch_jobs``: 429;
  ``max_replicas``, ``max_memory_mb``: a refused deploy, 409);
- ``plughost_namespace_replicas``: replicas ready in the namespace on this server;
- ``plughost_namespace_batch_jobs_running``: batch jobs running (from the database).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from plughost.metrics.collector import ReplicaFigures
from plughost.metrics.requests import RequestMetrics


class NamespaceMetrics(Collector):
    def __init__(
        self,
        requests: RequestMetrics,
        rejected: Counter[tuple[str, str]],
        replicas: Callable[[], list[ReplicaFigures]],
        batch_jobs_running: Callable[[], dict[str, int]],
    ) -> None:
        self.requests = requests
        self.rejected = rejected
        self.replicas = replicas
        self.batch_jobs_running = batch_jobs_running

    def collect(self) -> Iterator[Metric]:
        calls: Counter[str] = Counter()
        for stats in list(self.requests.by_plugin.values()):
            calls[stats.labels.namespace] += stats.requests
        requests = CounterMetricFamily(
            "plughost_namespace_request_counter",
            "Inference calls per namespace that reached a plugin",
            labels=["namespace"],
        )
        for ns, count in sorted(calls.items()):
            requests.add_metric([ns], count)
        rejections = CounterMetricFamily(
            "plughost_namespace_quota_rejections",
            "Requests a namespace quota refused (429 rates and batch jobs, 409 deploys)",
            labels=["namespace", "quota"],
        )
        for (ns, quota), count in sorted(self.rejected.copy().items()):
            rejections.add_metric([ns, quota], count)
        ready: Counter[str] = Counter()
        for fig in self.replicas():
            ready[fig.labels[0]] += fig.ready
        replicas = GaugeMetricFamily(
            "plughost_namespace_replicas",
            "Replicas ready per namespace on this server",
            labels=["namespace"],
        )
        for ns, count in sorted(ready.items()):
            replicas.add_metric([ns], count)
        jobs = GaugeMetricFamily(
            "plughost_namespace_batch_jobs_running",
            "Batch jobs running per namespace",
            labels=["namespace"],
        )
        for ns, count in sorted(self.batch_jobs_running().items()):
            jobs.add_metric([ns], count)
        yield from (requests, rejections, replicas, jobs)
