"""The Prometheus families of one server, built at scrape time.

Names follow Ray Serve's (``ray_serve_deployment_request_counter_total``,
``..._error_counter_total``, ``..._processing_latency_ms``, ``..._replica_starts_total``) with
the ``plughost_`` prefix, labelled per deployment like Triton's per-model metrics:
``namespace``, ``plugin`` (name), ``version``, ``deployment`` (``custom_plugin_{plugin_id}``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from plughost.domain.release import ReleaseView
from plughost.domain.states import Status
from plughost.metrics.model_loads import ModelLoadMetrics
from plughost.metrics.requests import (
    BATCH_SIZE_BUCKETS,
    LATENCY_BUCKETS_MS,
    RequestMetrics,
    RequestStats,
)

LABELS = ["namespace", "plugin", "version", "deployment"]
DEPLOY_BUCKETS_S: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


@dataclass
class ReplicaFigures:
    labels: list[str]  # LABELS values
    desired: int
    ready: int
    restarts: int


class DeployDurations:
    """A histogram of rollout durations (queue exit to serving), fed by the release board."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[str, str], list[int]] = {}
        self.sums: dict[tuple[str, str], float] = {}

    def on_change(self, view: ReleaseView, duration_s: float | None) -> None:
        """A :class:`~plughost.persistence.board.ReleaseBoard` listener."""
        if duration_s is None or view.status is not Status.DEPLOYED:
            return
        key = (view.namespace_id, view.name)
        counts = self.buckets.setdefault(key, [0] * (len(DEPLOY_BUCKETS_S) + 1))
        index = next((i for i, b in enumerate(DEPLOY_BUCKETS_S) if duration_s <= b),
                     len(DEPLOY_BUCKETS_S))
        counts[index] += 1
        self.sums[key] = self.sums.get(key, 0.0) + duration_s


class ValidationFailures:
    def __init__(self) -> None:
        self.by_namespace: Counter[str] = Counter()

    def failed(self, namespace_id: str) -> None:
        self.by_namespace[namespace_id] += 1


class PlughostCollector(Collector):
    """Reads the counters and asks ``replicas()`` / ``release_counts()`` at each scrape."""

    def __init__(
        self,
        requests: RequestMetrics,
        replicas: Callable[[], list[ReplicaFigures]],
        release_counts: Callable[[], Counter[str]],
        durations: DeployDurations,
        validation: ValidationFailures,
        model_loads: ModelLoadMetrics | None = None,
    ) -> None:
        self.requests = requests
        self.model_loads = model_loads if model_loads is not None else ModelLoadMetrics()
        self.replicas = replicas
        self.release_counts = release_counts
        self.durations = durations
        self.validation = validation
        self.extra: list[Collector] = []  # more families (per namespace: metrics.namespaces)

    def collect(self) -> Iterator[Metric]:
        yield from self._requests(list(self.requests.by_plugin.values()))
        yield from self._replicas(self.replicas())
        yield from self._releases(self.release_counts())
        yield from self._deploys()
        failures = CounterMetricFamily(
            "plughost_validation_failures", "Uploads whose validation failed", labels=["namespace"])
        for namespace, count in sorted(self.validation.by_namespace.items()):
            failures.add_metric([namespace], count)
        yield failures
        yield from self.model_loads.collect()
        for more in self.extra:
            yield from more.collect()

    @staticmethod
    def _requests(all_stats: list[RequestStats]) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "plughost_deployment_request_counter", "Inference calls per deployment", labels=LABELS)
        errors = CounterMetricFamily(
            "plughost_deployment_error_counter",
            "Inference calls that failed (plugin raised or replica unavailable)", labels=LABELS)
        in_flight = GaugeMetricFamily(
            "plughost_deployment_processing_queries", "Inference calls in flight", labels=LABELS)
        latency = HistogramMetricFamily(
            "plughost_deployment_processing_latency_ms",
            "Inference latency at the server, replica call included (ms)", labels=LABELS)
        timeouts = CounterMetricFamily(
            "plughost_deployment_request_timeouts",
            "Inference calls past their deadline (504), cancelled in the replica", labels=LABELS)
        cancellations = CounterMetricFamily(
            "plughost_deployment_request_cancellations",
            "Inference calls cancelled because their client disconnected", labels=LABELS)
        batch_sizes = HistogramMetricFamily(
            "plughost_deployment_batch_size",
            "Calls per micro-batch (serve_config.max_batch_size above 1)", labels=LABELS)
        for stats in all_stats:
            lab = stats.labels
            values = [lab.namespace, lab.plugin, lab.version, lab.deployment]
            requests.add_metric(values, stats.requests)
            errors.add_metric(values, stats.errors)
            in_flight.add_metric(values, stats.in_flight)
            latency.add_metric(values, _cumulative(LATENCY_BUCKETS_MS, stats.buckets),
                               stats.latency_sum_ms)
            timeouts.add_metric(values, stats.timeouts)
            cancellations.add_metric(values, stats.cancellations)
            if stats.batches:
                batch_sizes.add_metric(values, _cumulative(BATCH_SIZE_BUCKETS, stats.batch_buckets),
                                       stats.batch_size_sum)
        yield from (requests, errors, in_flight, latency, timeouts, cancellations, batch_sizes)

    @staticmethod
    def _replicas(figures: list[ReplicaFigures]) -> Iterator[Metric]:
        replicas = GaugeMetricFamily(
            "plughost_deployment_replicas", "Replicas of serving deployments by state",
            labels=[*LABELS, "state"])
        restarts = CounterMetricFamily(
            "plughost_deployment_replica_restarts",
            "Replica processes started to replace one that exited", labels=LABELS)
        for fig in figures:
            replicas.add_metric([*fig.labels, "desired"], fig.desired)
            replicas.add_metric([*fig.labels, "ready"], fig.ready)
            replicas.add_metric([*fig.labels, "unready"], max(0, fig.desired - fig.ready))
            restarts.add_metric(fig.labels, fig.restarts)
        yield from (replicas, restarts)

    @staticmethod
    def _releases(counts: Counter[str]) -> Iterator[Metric]:
        deployments = GaugeMetricFamily(
            "plughost_deployments", "Releases by status", labels=["status"])
        for status in Status:
            deployments.add_metric([status.value], counts.get(status.value, 0))
        yield deployments
        yield GaugeMetricFamily(
            "plughost_deployment_queue_length", "Releases waiting in the deployment queue",
            value=counts.get(Status.QUEUED.value, 0))

    def _deploys(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "plughost_deploy_duration_seconds",
            "Rollout duration, queue exit to serving", labels=["namespace", "plugin"])
        for key, counts in sorted(self.durations.buckets.items()):
            cumulative, total = [], 0
            for bound, count in zip((*DEPLOY_BUCKETS_S, float("inf")), counts, strict=True):
                total += count
                cumulative.append((_bound(bound), total))
            family.add_metric(list(key), cumulative, self.durations.sums.get(key, 0.0))
        yield family


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def render(collector: PlughostCollector) -> bytes:
    """The Prometheus text exposition of ``collector`` (a registry per scrape: no globals)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return bytes(generate_latest(registry))


def content_type() -> str:
    from prometheus_client import CONTENT_TYPE_LATEST

    return str(CONTENT_TYPE_LATEST)


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, int]]:
    """Prometheus histogram buckets (upper bound, cumulative count) from per-bucket counts
    whose last one is +Inf."""
    out, total = [], 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        total += count
        out.append((_bound(bound), total))
    return out
