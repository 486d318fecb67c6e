"""Guarded rollouts: canary steps and the blue-green bake window.

Runs inside the controller's rollout, after the new replicas passed their health and smoke
calls and before the release is recorded deployed. It moves only routes: the alias's
weighted split during a canary step (:meth:`RouteTable.split_alias`), the whole alias during
a bake window; on a breach it points the alias back at the old release and raises
:class:`RolledBack`, which fails the new release with the figures. The alias row (desired
state) is written by the controller's switch once the guard passed, so a breach leaves it
where it was."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from plughost.control.canary import RolledBack, baseline, breach
from plughost.dataplane.routes import Route, RouteTable
from plughost.domain.rollout import RolloutOptions
from plughost.metrics.requests import RequestMetrics
from plughost.metrics.window import Figures, Snapshot

Note = Callable[[str], Awaitable[object]]
NOTE_EVERY_S = 1.0
WARMUP_CALLS = 10  # a fresh replica's first calls, left out of the latency rule


class Guard:
    """Watches ``new`` against ``old`` on live traffic; see the module docstring."""

    def __init__(
        self,
        options: RolloutOptions,
        metrics: RequestMetrics,
        routes: RouteTable,
        old: Route,
        new: Route,
        note: Note,
    ) -> None:
        self.options = options
        self.routes = routes
        self.old, self.new = old, new
        self.old_stats = metrics.for_route(old)
        self.new_stats = metrics.for_route(new)
        self.note = note
        self.figures: Figures | None = None  # the new release's, in the current step
        self._zero = Snapshot(0.0, 0, 0, (0,) * len(self.old_stats.buckets))
        self._warm: Snapshot | None = None  # the new release's counters after WARMUP_CALLS
        self._first = Snapshot.of(self.new_stats)

    async def run(self) -> None:
        """Canary steps, or the bake window after the switch; raises RolledBack on a breach."""
        try:
            if self.options.strategy == "canary":
                for i, share in enumerate(self.options.canary_steps, 1):
                    await self._step(share, f"canary step {i}/{len(self.options.canary_steps)}")
            elif self.options.bake_seconds > 0:
                await self._step(100, "blue-green bake window", bake=True)
        except BaseException:
            self._back_to_old()
            raise

    async def _step(self, share: int, label: str, bake: bool = False) -> None:
        if share >= 100:
            self.routes.set_alias(self.old.namespace_id, self.old.name, self.new)
        else:
            self.routes.split_alias(self.old, self.new, share / 100)
        o = self.options
        length = o.bake_seconds if bake else o.step_seconds
        new0, old0 = Snapshot.of(self.new_stats), Snapshot.of(self.old_stats)
        started = time.monotonic()
        noted = 0.0
        while True:
            await asyncio.sleep(min(0.05, length / 4))  # a breach costs calls: look often
            now = time.monotonic()
            new = Figures.between(new0, Snapshot.of(self.new_stats, now))
            old_step = Figures.between(old0, Snapshot.of(self.old_stats, now))
            old_all = Figures.between(self._zero, Snapshot.of(self.old_stats, now))
            old = baseline(old_step, old_all)
            self.figures = new
            why = breach(o, new, old, self._warm_figures(now))
            if why is not None:
                raise RolledBack(
                    f"rolled back at {label} ({share}% of traffic): {why}; "
                    f"new version: {new.text()}; old version: {old.text()}"
                )
            if now - started >= length and (bake or new.requests > 0):
                return
            if now - started >= max(length, o.traffic_deadline_seconds):
                raise RolledBack(
                    f"kept the old version: {label} ({share}% of traffic) saw no call on the "
                    f"new version in {o.traffic_deadline_seconds:g} s, so it could not be judged"
                )
            if now - noted >= NOTE_EVERY_S:
                noted = now
                waiting = "" if new.requests or now - started < length else ", waiting for traffic"
                await self.note(
                    f"{label}: {share}% of the alias's traffic on the new version for "
                    f"{now - started:.0f}/{length:g} s{waiting}; new: {new.text()}; "
                    f"old: {old.text()}"
                )

    def _warm_figures(self, now: float) -> Figures | None:
        """The new release's figures after its first WARMUP_CALLS calls (None before)."""
        current = Snapshot.of(self.new_stats, now)
        if self._warm is None:
            if current.requests - self._first.requests < WARMUP_CALLS:
                return None
            self._warm = current
        return Figures.between(self._warm, current)

    def _back_to_old(self) -> None:
        """All traffic to the old release again, unless the alias moved on meanwhile."""
        current = self.routes.lookup(self.old.namespace_id, self.old.name)
        if current is None:
            return
        if current.release_id == self.new.release_id or (
            current.canary is not None and current.canary.release_id == self.new.release_id
        ):
            self.routes.set_alias(self.old.namespace_id, self.old.name, self.old)
