"""Model loads in plugin processes, as their hosts report them (each load: the model, ok or
failed, seconds): ``plughost_model_loads_total{namespace,model,outcome}`` and the histogram
``plughost_model_load_seconds{namespace,model}``.

Written on the event loop only (container calls are answered there), read at scrape time.
The number of series is bounded: past :data:`MAX_SERIES` (namespace, model) pairs, new ones
are counted under the model ``other``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

LOAD_BUCKETS_S: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OUTCOMES = ("ok", "failed")
MAX_SERIES = 2000
MAX_LOAD_S = 24 * 3600.0


@dataclass
class _Series:
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LOAD_BUCKETS_S) + 1))
    seconds: float = 0.0


class ModelLoadMetrics:
    """The counts and durations of model loads per (namespace, model)."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], _Series] = {}

    def record(self, namespace: str, model: str, outcome: str, seconds: float) -> None:
        """Count one load; ``outcome`` other than ``ok`` counts as ``failed``, and a duration
        outside 0..24 h is clamped."""
        key = (namespace or "", model or "")
        if key not in self.series and len(self.series) >= MAX_SERIES:
            key = (key[0], "other")
        entry = self.series.setdefault(key, _Series())
        entry.outcomes["ok" if outcome == "ok" else "failed"] += 1
        value = float(seconds)
        value = min(value, MAX_LOAD_S) if value >= 0 else 0.0  # NaN and negatives: 0
        index = next(
            (i for i, bound in enumerate(LOAD_BUCKETS_S) if value <= bound), len(LOAD_BUCKETS_S)
        )
        entry.buckets[index] += 1
        entry.seconds += value

    def collect(self) -> Iterator[Metric]:
        loads = CounterMetricFamily(
            "plughost_model_loads", "Model loads in plugin processes",
            labels=["namespace", "model", "outcome"])
        seconds = HistogramMetricFamily(
            "plughost_model_load_seconds", "Time a plugin took to load a model",
            labels=["namespace", "model"])
        for (namespace, model), entry in sorted(self.series.items()):
            for outcome in OUTCOMES:
                loads.add_metric([namespace, model, outcome], entry.outcomes[outcome])
            cumulative, total = [], 0
            for bound, count in zip((*LOAD_BUCKETS_S, float("inf")), entry.buckets, strict=True):
                total += count
                cumulative.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
            seconds.add_metric([namespace, model], cumulative, entry.seconds)
        yield from (loads, seconds)
