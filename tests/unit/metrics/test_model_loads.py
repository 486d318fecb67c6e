"""Model load counts and durations: recorded per (namespace, model), exposed as
plughost_model_loads_total and plughost_model_load_seconds."""

from __future__ import annotations

import math
from collections import Counter

from plughost.metrics.collector import (
    DeployDurations,
    PlughostCollector,
    ValidationFailures,
    render,
)
from plughost.metrics.model_loads import MAX_SERIES, ModelLoadMetrics
from plughost.metrics.requests import RequestMetrics


def _text(loads: ModelLoadMetrics) -> str:
    collector = PlughostCollector(RequestMetrics(), list, Counter, DeployDurations(),
                                  ValidationFailures(), loads)
    return render(collector).decode()


def test_loads_are_counted_by_outcome_and_timed() -> None:
    loads = ModelLoadMetrics()
    loads.record("ns_a", "tiny_1_0_0", "ok", 0.2)
    loads.record("ns_a", "tiny_1_0_0", "ok", 3.0)
    loads.record("ns_a", "tiny_1_0_0", "failed", 0.01)
    text = _text(loads)
    assert 'plughost_model_loads_total{model="tiny_1_0_0",namespace="ns_a",outcome="ok"} 2.0' in text
    assert ('plughost_model_loads_total{model="tiny_1_0_0",namespace="ns_a",outcome="failed"} 1.0'
            in text)
    assert 'plughost_model_load_seconds_count{model="tiny_1_0_0",namespace="ns_a"} 3.0' in text
    assert 'plughost_model_load_seconds_bucket{le="0.25",model="tiny_1_0_0",namespace="ns_a"} 2.0' \
        in text
    assert 'plughost_model_load_seconds_sum{model="tiny_1_0_0",namespace="ns_a"} 3.21' in text


def test_hostile_durations_are_clamped_and_series_bounded() -> None:
    loads = ModelLoadMetrics()
    loads.record("ns", "m", "weird", math.nan)
    loads.record("ns", "m", "ok", -5)
    loads.record("ns", "m", "ok", math.inf)
    series = loads.series[("ns", "m")]
    assert series.outcomes == {"ok": 2, "failed": 1}
    assert series.seconds == 24 * 3600.0
    for i in range(MAX_SERIES + 5):
        loads.record("ns", f"model_{i}", "ok", 1)
    assert len(loads.series) == MAX_SERIES + 1  # the rest under "other"
    assert ("ns", "other") in loads.series
