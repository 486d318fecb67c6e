"""The per-namespace families of /metrics (issue 28, item 2): calls, quota refusals,
replicas ready and batch jobs running, each labelled by namespace."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from plughost.metrics.collector import (
    DeployDurations,
    PlughostCollector,
    ReplicaFigures,
    ValidationFailures,
    render,
)
from plughost.metrics.namespaces import NamespaceMetrics
from plughost.metrics.requests import RequestMetrics


@dataclass
class FakeRoute:
    namespace_id: str
    plugin_id: str
    name: str
    version: str
    release_id: int


def test_the_namespace_families_sum_the_deployments_and_count_refusals() -> None:
    metrics = RequestMetrics()
    metrics.for_route(FakeRoute("ns_a", "p_1_0_0", "p", "1.0.0", 1)).requests = 3
    metrics.for_route(FakeRoute("ns_a", "q_1_0_0", "q", "1.0.0", 2)).requests = 4
    metrics.for_route(FakeRoute("ns_b", "p_1_0_0", "p", "1.0.0", 3)).requests = 1
    rejected: Counter[tuple[str, str]] = Counter({("ns_a", "requests_per_second"): 5})
    figures = [
        ReplicaFigures(["ns_a", "p", "1.0.0", "custom_plugin_p_1_0_0"], 2, 2, 0),
        ReplicaFigures(["ns_a", "q", "1.0.0", "custom_plugin_q_1_0_0"], 1, 1, 0),
    ]
    collector = PlughostCollector(
        metrics, lambda: figures, Counter, DeployDurations(), ValidationFailures()
    )
    collector.extra.append(
        NamespaceMetrics(metrics, rejected, collector.replicas, lambda: {"ns_b": 2})
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(render(collector).decode())
        for s in family.samples
    }
    assert samples[("plughost_namespace_request_counter_total", (("namespace", "ns_a"),))] == 7
    assert samples[("plughost_namespace_request_counter_total", (("namespace", "ns_b"),))] == 1
    key = (("namespace", "ns_a"), ("quota", "requests_per_second"))
    assert samples[("plughost_namespace_quota_rejections_total", key)] == 5
    assert samples[("plughost_namespace_replicas", (("namespace", "ns_a"),))] == 3
    assert samples[("plughost_namespace_batch_jobs_running", (("namespace", "ns_b"),))] == 2
