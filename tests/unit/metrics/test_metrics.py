"""Request counters, the collector's text and the latency quantiles (plughost.metrics)."""

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
from plughost.metrics.requests import RequestMetrics
from plughost.metrics.series import quantile


@dataclass
class FakeRoute:
    namespace_id: str
    plugin_id: str
    name: str
    version: str
    release_id: int


def test_a_redeploy_keeps_counting_on_the_same_series() -> None:
    metrics = RequestMetrics()
    first = metrics.for_route(FakeRoute("ns", "p_1_0_0", "p", "1.0.0", 1))
    second = metrics.for_route(FakeRoute("ns", "p_1_0_0", "p", "1.0.0", 2))
    assert first is second
    assert metrics.for_route(FakeRoute("ns", "p_1_0_0", "p", "1.0.0", 1)) is first


def test_the_exposition_parses_and_holds_exactly_what_was_counted() -> None:
    metrics = RequestMetrics()
    stats = metrics.for_route(FakeRoute("ns", "p_1_0_0", "p", "1.0.0", 1))
    for seconds in (0.0002, 0.003, 0.003, 2.5):
        stats.observe(seconds)
    stats.errors = 1
    collector = PlughostCollector(
        metrics,
        lambda: [ReplicaFigures(["ns", "p", "1.0.0", "custom_plugin_p_1_0_0"], 2, 1, 3)],
        lambda: Counter({"deployed": 1, "queued": 2}),
        DeployDurations(),
        ValidationFailures(),
    )
    samples = {}
    for family in text_string_to_metric_families(render(collector).decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    labels = (("deployment", "custom_plugin_p_1_0_0"), ("namespace", "ns"), ("plugin", "p"),
              ("version", "1.0.0"))
    assert samples[("plughost_deployment_request_counter_total", labels)] == 4
    assert samples[("plughost_deployment_error_counter_total", labels)] == 1
    le = lambda b: tuple(sorted((*labels, ("le", b))))
    assert samples[("plughost_deployment_processing_latency_ms_bucket", le("0.25"))] == 1
    assert samples[("plughost_deployment_processing_latency_ms_bucket", le("5.0"))] == 3
    assert samples[("plughost_deployment_processing_latency_ms_bucket", le("+Inf"))] == 4
    assert samples[("plughost_deployment_replicas", tuple(sorted((*labels, ("state", "unready")))))] == 1
    assert samples[("plughost_deployment_replica_restarts_total", labels)] == 3
    assert samples[("plughost_deployment_queue_length", ())] == 2
    assert samples[("plughost_deployments", (("status", "failed"),))] == 0


def test_quantiles_interpolate_inside_a_bucket() -> None:
    counts = [0] * 19
    assert quantile(counts, 0.5) is None
    counts[3] = 10  # ten calls in (0.5, 1] ms
    assert 0.5 < quantile(counts, 0.5) <= 1.0
    counts[18] = 1  # one over the last bound
    assert quantile(counts, 0.99) == 60000
