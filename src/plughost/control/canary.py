"""The rollout guard's judge: is the new release worse than the old one?

Pure: figures in, a reason out. The error rule: at least ``min_failed_calls`` failed calls
and an error rate more than ``max_error_rate`` above the old release's. The latency rule: a
p99 of at least ``min_p99_ms`` (and at least ``min_failed_calls`` calls behind it) more than
``max_p99_ratio`` times the old release's p99 (no old p99: no latency verdict). The latency
rule waits for :data:`LATENCY_MIN_CALLS` calls on the new release: below that its p99 is its
slowest call, and one cold first call would fail a healthy version."""

from __future__ import annotations

from plughost.domain.rollout import RolloutOptions
from plughost.metrics.window import Figures

LATENCY_MIN_CALLS = 20


class RolledBack(Exception):
    """The guard sent all traffic back to the old release; ``str()`` gives the figures."""


def breach(
    options: RolloutOptions, new: Figures, old: Figures | None, warm: Figures | None = None
) -> str | None:
    """Why ``new`` fails against ``old`` (None: it does not, so far). ``warm``: the new
    release's figures without its first calls (a fresh process warms up), for the latency
    rule; default ``new``."""
    old_rate = old.error_rate if old is not None and old.requests else 0.0
    if (
        new.errors >= options.min_failed_calls
        and new.error_rate > old_rate + options.max_error_rate
    ):
        return (
            f"error rate {new.error_rate:.1%} ({new.errors} of {new.requests} calls failed) "
            f"against {old_rate:.1%} on the old version; allowed +{options.max_error_rate:.1%}"
        )
    lat = new if warm is None else warm
    if (
        lat.p99_ms is not None
        and lat.requests >= max(options.min_failed_calls, LATENCY_MIN_CALLS)
        and lat.p99_ms >= options.min_p99_ms
        and old is not None
        and old.p99_ms is not None
        and lat.p99_ms > options.max_p99_ratio * max(old.p99_ms, 0.001)
    ):
        return (
            f"latency p99 {lat.p99_ms:g} ms against {old.p99_ms:g} ms on the old version "
            f"({lat.p99_ms / max(old.p99_ms, 0.001):.1f}x; allowed {options.max_p99_ratio:g}x)"
        )
    return None


def baseline(step: Figures, lifetime: Figures, least: int = 20) -> Figures:
    """The old release's figures to compare with: this step's when it had at least ``least``
    calls, else its whole record on this server (it takes no traffic during a bake window
    or the 100% step)."""
    return step if step.requests >= least else lifetime
