"""Request figures over the last minute, from snapshots of the cumulative counters.

:class:`RecentWindow` keeps a snapshot of each :class:`RequestStats` every few seconds (taken
by the sampler's loop, and on demand); the figures of the last minute are the difference
between now and the oldest snapshot inside the minute. The rollout guard uses the same
:class:`Snapshot` arithmetic over its own steps."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from plughost.metrics.requests import RequestStats
from plughost.metrics.series import quantile

WINDOW_S = 60.0
SNAPSHOT_EVERY_S = 5.0


@dataclass(frozen=True)
class Snapshot:
    at: float
    requests: int
    errors: int
    buckets: tuple[int, ...]

    @classmethod
    def of(cls, stats: RequestStats, at: float | None = None) -> Snapshot:
        return cls(
            time.monotonic() if at is None else at,
            stats.requests,
            stats.errors,
            tuple(stats.buckets),
        )


@dataclass(frozen=True)
class Figures:
    """Calls, failed calls and latency quantiles (ms) over ``seconds``. ``p99_ms`` is the
    99th percentile from 250 calls on; below that, the quantile that leaves out the slowest
    2.5 calls (a p99 of 60 calls is its slowest call, which says nothing about the rest)."""

    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    seconds: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @classmethod
    def between(cls, before: Snapshot, after: Snapshot) -> Figures:
        delta = [a - b for a, b in zip(after.buckets, before.buckets, strict=True)]
        total = sum(delta)
        # under 250 calls a p99 is the slowest call or two: judge the third-slowest instead
        q99 = min(0.99, 1.0 - 2.5 / total) if total else 0.99
        return cls(
            after.requests - before.requests,
            after.errors - before.errors,
            quantile(delta, 0.5),
            quantile(delta, max(0.5, q99)),
            round(after.at - before.at, 3),
        )

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "window_s": self.seconds,
        }

    def text(self) -> str:
        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:g} ms"
        return f"{self.requests} calls, {self.errors} failed ({self.error_rate:.1%}), p99 {p99}"


class RecentWindow:
    """Snapshots per stats object (by identity), for the figures of the last minute."""

    def __init__(self) -> None:
        self._snaps: dict[int, deque[Snapshot]] = {}

    def record(self, stats: RequestStats, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        snaps = self._snaps.setdefault(id(stats), deque())
        if not snaps or now - snaps[-1].at >= SNAPSHOT_EVERY_S:
            snaps.append(Snapshot.of(stats, now))
        while len(snaps) > 1 and now - snaps[1].at >= WINDOW_S:
            snaps.popleft()

    def figures(self, stats: RequestStats, now: float | None = None) -> Figures:
        """The last minute's figures (or since the first snapshot, when younger)."""
        now = time.monotonic() if now is None else now
        self.record(stats, now)
        return Figures.between(self._snaps[id(stats)][0], Snapshot.of(stats, now))
