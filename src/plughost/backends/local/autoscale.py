"""Autoscaling of a local replica group, between ``serve_config.min_replicas`` and
``max_replicas``, aiming at ``target_ongoing_requests`` calls in flight per replica.

Every :data:`TICK_S` the scaler reads the calls in flight on the group's replicas (the same
counters least-busy routing reads) and computes the replicas wanted. It scales up once the
demand has lasted ``upscale_delay_s`` (default 0: at once; at most 3 s) or at once when the
demand is 2x what is ready (the burst rule), and down by one replica once fewer were wanted
for ``downscale_delay_s`` (default 60 s). It never starts a replica the machine's memory
cannot hold (MemAvailable against the replica's ``memory_gb`` limit, else 512 MB) and says
so in :attr:`Autoscaler.note`, nor one past its namespace's quotas (``max_replicas``,
``max_memory_mb``: :data:`CEILING`, counted over the groups of this process). A retired
replica leaves routing first, then drains."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from plughost.backends.base import GroupSpec
from plughost.backends.local.spare import Spare
from plughost.config import Settings
from plughost.errors import Unavailable

log = logging.getLogger("plughost.autoscale")

TICK_S = 0.25
SPARE_FAILURES_MAX = 3  # spares that die before use in a row: stop keeping one
MAX_LOCAL_REPLICAS = 16
REPLICA_MEMORY_GUESS_MB = 512


@dataclass(frozen=True)
class ScalePolicy:
    min_replicas: int
    max_replicas: int
    target_ongoing: float
    upscale_delay_s: float
    downscale_delay_s: float

    zero_after_s: float | None = None  # min_replicas 0: idle this long, then no replica

    @classmethod
    def of(cls, serve_config: dict[str, Any]) -> ScalePolicy | None:
        """The policy of a serve_config; None for a fixed count (``num_replicas``, or no
        ``max_replicas`` above the minimum)."""
        if serve_config.get("num_replicas"):
            return None
        try:
            zero = serve_config.get("min_replicas") == 0
            low = max(1, int(serve_config.get("min_replicas") or 1))
            high = min(MAX_LOCAL_REPLICAS, int(serve_config.get("max_replicas") or low))
            zero_after = float(serve_config.get("scale_to_zero_after_s", 300.0)) if zero else None
            target = float(serve_config.get("target_ongoing_requests") or 2)
            up = min(3.0, max(0.0, float(serve_config.get("upscale_delay_s", 0.0))))
            down = max(0.0, float(serve_config.get("downscale_delay_s", 60.0)))
        except (TypeError, ValueError):
            return None
        if (high <= low and zero_after is None) or target <= 0:
            return None
        return cls(low, high, target, up, down, zero_after)

    def wanted(self, ongoing: int) -> int:
        return max(
            self.min_replicas, min(self.max_replicas, math.ceil(ongoing / self.target_ongoing))
        )


def available_memory_mb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return None


class ScaledGroup(Protocol):
    """What the autoscaler drives (a :class:`~.local_group.LocalReplicaGroup`): the live
    replicas it counts, the retired ones it takes out of them, and a launch of one more."""

    spec: GroupSpec
    settings: Settings
    replicas: list[Any]
    retired: set[Any]

    async def launch(self, hold_fd: int | None = None) -> Any:
        """Start one replica (a warm spare with ``hold_fd``) and add it to ``replicas``."""
        ...


class NamespaceCeiling:
    """The namespace quotas the autoscalers of this process respect: every local group is
    registered under its namespace (:func:`start_autoscaler`), and ``limits`` (set by
    :func:`plughost.services.policies.build_policy_book`) gives a namespace's policy. A
    group's replicas count as they run (live and starting); a group scaled to zero counts
    none (its deploy reserved one, see plughost.services.deploy)."""

    def __init__(self) -> None:
        self.groups: dict[str, weakref.WeakSet[Any]] = {}
        self.limits: Callable[[str], Any] | None = None

    def register(self, group: ScaledGroup) -> None:
        ns = getattr(group.spec, "namespace_id", None)
        if ns is not None:
            self.groups.setdefault(ns, weakref.WeakSet()).add(group)

    def headroom(self, group: ScaledGroup) -> tuple[int | None, str | None]:
        """How many more replicas of ``group`` its namespace's quotas allow (None: no
        limit), and the note that says which quota holds."""
        ns = getattr(group.spec, "namespace_id", None)
        policy = self.limits(ns) if self.limits is not None and ns is not None else None
        if policy is None or (policy.max_replicas is None and policy.max_memory_mb is None):
            return None, None
        replicas, memory_mb = 0, 0.0
        for other in list(self.groups.get(ns, ())):  # type: ignore[arg-type]
            scaler = getattr(other, "autoscaler", None)
            count = len(other.replicas) + (scaler.starting if scaler is not None else 0)
            replicas += count
            memory_mb += count * replica_memory_mb(other)
        room: int | None = None
        note = None
        if policy.max_replicas is not None:
            room = max(0, policy.max_replicas - replicas)
            note = f"namespace quota max_replicas={policy.max_replicas} holds ({replicas} running)"
        if policy.max_memory_mb is not None:
            need_mb = replica_memory_mb(group)
            by_memory = max(0, int((policy.max_memory_mb - memory_mb) // need_mb))
            if room is None or by_memory < room:
                room = by_memory
                note = (
                    f"namespace quota max_memory_mb={policy.max_memory_mb} holds "
                    f"({memory_mb:.0f} MB in use)"
                )
        return room, note


CEILING = NamespaceCeiling()


def replica_memory_mb(group: ScaledGroup) -> float:
    """The memory limit of one replica of ``group``: serve_config.memory_gb, else the
    server's default (PLUGHOST_SANDBOX_MEMORY_GB)."""
    raw = group.spec.serve_config.get("memory_gb")
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0:
        return float(raw) * 1024
    return float(group.settings.sandbox_memory_gb) * 1024


class WakeUnavailable(Unavailable):
    """A call to a group at zero whose replica did not become ready in time."""


class Autoscaler:
    """Drives one group's replica count; see the module docstring."""

    def __init__(self, group: ScaledGroup, policy: ScalePolicy) -> None:
        self.group = group
        self.policy = policy
        self.target = len(group.replicas)
        self.starting = 0
        self.note: str | None = None
        self._up_since: float | None = None
        self._down_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_call = time.monotonic()
        self.cold_starts: list[float] = []  # seconds, of starts from zero
        self._waking: asyncio.Task[None] | None = None
        # at zero: a pre-started replica waiting to load the plugin (local_spare)
        self.spare: Spare | None = None
        self._spare_failures = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.spare is not None:
            self.spare.discard()
            self.spare = None

    def _keep_spare(self) -> None:
        """At zero with ``PLUGHOST_WARM_SPARE``: have one spare waiting (a new one when the
        last died, unless spares keep dying)."""
        if not self.group.settings.warm_spare:
            return
        if self.spare is not None:
            if self.spare.usable:
                return
            self._spare_failures += 1
            self.spare = None
            if self._spare_failures == SPARE_FAILURES_MAX:
                log.warning(
                    "warm spares of %s keep ending before use; starting cold from now on",
                    self.group.spec.deployment_name,
                )
        if self._spare_failures < SPARE_FAILURES_MAX:
            self.spare = Spare(self.group.launch)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self.step(time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception:  # a scaling step must never end the scaler
                log.exception("autoscaling step of %s failed", self.group.spec.deployment_name)

    @property
    def at_zero(self) -> bool:
        return not self.group.replicas and not self.starting

    def cold_start_s(self) -> float | None:
        """The median of the cold starts seen so far."""
        if not self.cold_starts:
            return None
        ordered = sorted(self.cold_starts)
        return ordered[len(ordered) // 2]

    async def wake(self) -> None:
        """Start one replica for a group at zero and wait for it (callers share the start);
        bounded by the replica start timeout. When the bound runs out (the start goes on) or
        the start failed, the call gets :class:`WakeUnavailable`, whose ``retry_after_s``
        becomes the client's 503 ``Retry-After``."""
        if self._waking is None or self._waking.done():
            self._waking = asyncio.create_task(self._cold_start())
        bound = self.group.settings.replica_start_timeout_s
        try:
            await asyncio.wait_for(asyncio.shield(self._waking), bound)
        except Exception as exc:  # a timeout or a failed start: the caller gets a 503
            if any(r.alive for r in self.group.replicas):
                return  # another start (a scale-up) made one meanwhile
            raise self._wake_error(exc, bound) from exc

    def _wake_error(self, exc: Exception, bound: float) -> WakeUnavailable:
        name = self.group.spec.deployment_name
        if isinstance(exc, TimeoutError):
            error = WakeUnavailable(
                f"{name} is scaled to zero and no replica was ready within {bound:g} s "
                "(it is still starting); retry later"
            )
        else:
            error = WakeUnavailable(
                f"{name} is scaled to zero and starting a replica failed: {exc}"
            )
        error.retry_after_s = self.cold_start_s() or 1.0
        return error

    async def _cold_start(self) -> None:
        started = time.monotonic()
        self.starting += 1
        spare, self.spare = self.spare, None
        try:
            if spare is not None and spare.usable:
                try:
                    await spare.go(self.group.settings.replica_start_timeout_s)
                    self._spare_failures = 0
                except Exception as exc:  # noqa: BLE001 - the spare's loss is not the call's
                    log.warning(
                        "warm spare of %s failed (%s); starting cold",
                        self.group.spec.deployment_name,
                        exc,
                    )
                    await self.group.launch()
            else:
                if spare is not None:
                    spare.discard()
                await self.group.launch()
        finally:
            self.starting -= 1
        self.cold_starts = [*self.cold_starts[-19:], time.monotonic() - started]
        self.target = max(1, self.target)

    async def _to_zero(self, now: float) -> bool:
        """Retire every replica once the group was idle ``zero_after_s``; True when it did."""
        after = self.policy.zero_after_s
        replicas = list(self.group.replicas)
        if after is None or not replicas or self.starting or now - self.last_call < after:
            return False
        if any(r.in_flight for r in replicas):
            return False
        for victim in replicas:
            self.group.retired.add(victim)
            self.group.replicas.remove(victim)
        self.target = 0
        await asyncio.gather(*(v.stop(self.group.settings.drain_timeout_s) for v in replicas))
        return True

    async def step(self, now: float) -> None:
        if self.at_zero or await self._to_zero(now):
            if self.at_zero:
                self._keep_spare()
            return
        replicas = [r for r in self.group.replicas if r.alive]
        ongoing = sum(r.in_flight for r in replicas)
        wanted = self.policy.wanted(ongoing)
        current = len(replicas) + self.starting
        if wanted > current:
            self._down_since = None
            self._up_since = self._up_since if self._up_since is not None else now
            burst = ongoing >= 2 * max(1, len(replicas)) * self.policy.target_ongoing
            if burst or now - self._up_since >= self.policy.upscale_delay_s:
                self._up_since = None
                await self._scale_up(wanted - current)
        elif wanted < current and not self.starting:
            self._up_since = None
            self._down_since = self._down_since if self._down_since is not None else now
            if now - self._down_since >= self.policy.downscale_delay_s:
                self._down_since = now  # one replica per downscale delay
                await self._retire_one(replicas)
        else:
            self._up_since = self._down_since = None
        self.target = max(wanted, len(self.group.replicas) + self.starting)

    async def _scale_up(self, count: int) -> None:
        room, why = CEILING.headroom(self.group)
        quota_note = None
        if room is not None and room < count:
            count, quota_note = room, f"{why}; not starting more replicas"
            if count <= 0:
                self.note = quota_note
                return
        need_mb = float(self.group.spec.serve_config.get("memory_gb") or 0) * 1024
        need_mb = need_mb or REPLICA_MEMORY_GUESS_MB
        free = available_memory_mb()
        if free is not None and free < need_mb * count:
            count = int(free // need_mb)
            self.note = (
                f"memory cap: {free:.0f} MB available, a replica may take {need_mb:.0f} MB; "
                f"not starting more replicas"
            )
            if count <= 0:
                return
        else:
            self.note = quota_note
        self.starting += count
        results = await asyncio.gather(
            *(self.group.launch() for _ in range(count)), return_exceptions=True
        )
        self.starting -= count
        for result in results:
            if isinstance(result, BaseException):
                log.warning("scale-up of %s failed: %s", self.group.spec.deployment_name, result)

    async def _retire_one(self, replicas: list[Any]) -> None:
        if len(replicas) <= self.policy.min_replicas:
            return
        victim = min(replicas, key=lambda r: r.in_flight)
        self.group.retired.add(victim)
        if victim in self.group.replicas:
            self.group.replicas.remove(victim)  # out of routing first, then drained
        await victim.stop(self.group.settings.drain_timeout_s)


def start_autoscaler(group: ScaledGroup) -> Autoscaler | None:
    """An autoscaler for ``group`` when its serve_config asks for one (else None); every
    group counts towards its namespace's quotas (:data:`CEILING`)."""
    CEILING.register(group)
    policy = ScalePolicy.of(group.spec.serve_config)
    if policy is None:
        return None
    scaler = Autoscaler(group, policy)
    scaler.start()
    return scaler
