"""A backend without processes, for the controller's unit tests.

It implements :class:`plughost.backends.base.Backend` with explicit knobs instead of
patching: ``hold(release_id)`` keeps a start waiting until ``let_go(release_id)``,
``fail_start(release_id, msg)`` makes the next start of a release raise StartFailed,
``unhealthy(release_id)`` fails its health call, ``fault(release_id, fail_share, delay_s)``
makes its calls fail or slow (a slow call also moves the backend's ``clock`` on by its
delay, the clock the harness times calls with), and ``FakeGroup.crash(msg)`` marks a
running group as crashing for good (what the local backend reports after repeated
crashes). It records what happened: ``started`` (in order), ``running`` and ``peak``
(starts under way at once), and each group's ``stopped`` drain timeout.
"""

from __future__ import annotations

import asyncio

import orjson

from plughost.backends.base import (
    Backend,
    CallFailed,
    GroupHealth,
    GroupSnapshot,
    GroupSpec,
    ReplicaGroup,
    StartFailed,
    Unavailable,
    plain_snapshot,
)


class ManualClock:
    """A clock that moves only when told to: call durations that do not depend on how busy
    the machine running the tests is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeGroup(ReplicaGroup):
    """The replicas of one release: calls answer ``{"release": id}``."""

    def __init__(
        self, spec: GroupSpec, healthy: bool = True, clock: ManualClock | None = None
    ) -> None:
        self.spec = spec
        self.clock = clock or ManualClock()
        self.healthy = healthy
        self.calls = 0
        self.stopped: float | None = None  # the drain timeout it was stopped with
        self._crash: str | None = None
        self.fail_share = 0.0  # this share of calls raise (evenly spread), see FakeBackend.fault
        self.delay_s = 0.0  # each call takes this long
        self._debt = 0.0

    def crash(self, error: str = "replicas crashed 5 times in a row; giving up") -> None:
        self._crash = error

    async def call_body(self, body: bytes, deadline_s: float | None = None) -> bytes:
        if self.stopped is not None or self._crash is not None:
            raise Unavailable("no replica is ready")
        orjson.loads(body)
        self.calls += 1
        if self.delay_s:
            self.clock.advance(self.delay_s)
            await asyncio.sleep(self.delay_s)
        self._debt += self.fail_share
        if self._debt >= 1.0:
            self._debt -= 1.0
            raise CallFailed("RuntimeError", "injected failure")
        return orjson.dumps({"release": self.spec.release_id})

    async def health(self) -> bool:
        return self.healthy and self.stopped is None

    def observe(self) -> GroupHealth:
        ready = 0 if self._crash or self.stopped is not None else self.spec.num_replicas
        return GroupHealth(self.spec.num_replicas, ready, self._crash is not None, self._crash)

    def snapshot(self) -> GroupSnapshot:
        return plain_snapshot(self.observe())

    async def stop(self, drain_timeout_s: float) -> None:
        if self.stopped is None:
            self.stopped = drain_timeout_s


class FakeBackend(Backend):
    name = "fake"

    def __init__(self) -> None:
        self.started: list[int] = []  # release ids, in the order their starts began
        self.groups: list[FakeGroup] = []  # every group handed out
        self.running = 0
        self.peak = 0
        self.shut_down = False
        self._holds: dict[int, asyncio.Event] = {}
        self._failures: dict[int, str] = {}
        self._unhealthy: set[int] = set()
        self._faults: dict[int, tuple[float, float]] = {}
        self.clock = ManualClock()

    # -- knobs --------------------------------------------------------------------------------
    def hold(self, release_id: int) -> None:
        """Starts of ``release_id`` wait until :meth:`let_go`."""
        self._holds.setdefault(release_id, asyncio.Event())

    def let_go(self, release_id: int) -> None:
        self._holds.setdefault(release_id, asyncio.Event()).set()

    def fail_start(self, release_id: int, message: str) -> None:
        self._failures[release_id] = message

    def unhealthy(self, release_id: int) -> None:
        self._unhealthy.add(release_id)

    def fault(self, release_id: int, fail_share: float = 0.0, delay_s: float = 0.0) -> None:
        """Groups of ``release_id`` fail ``fail_share`` of their calls and take ``delay_s``."""
        self._faults[release_id] = (fail_share, delay_s)

    # -- what happened ------------------------------------------------------------------------
    def waiting(self, release_id: int) -> bool:
        """Whether a start of ``release_id`` is under way."""
        return release_id in self.started and not any(
            g.spec.release_id == release_id for g in self.groups
        )

    def group_of(self, release_id: int) -> FakeGroup:
        return next(g for g in reversed(self.groups) if g.spec.release_id == release_id)

    # -- Backend ------------------------------------------------------------------------------
    async def start(self, spec: GroupSpec) -> FakeGroup:
        self.started.append(spec.release_id)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            hold = self._holds.get(spec.release_id)
            if hold is not None:
                await hold.wait()
            await asyncio.sleep(0)
            message = self._failures.pop(spec.release_id, None)
            if message is not None:
                raise StartFailed(message)
            group = FakeGroup(
                spec, healthy=spec.release_id not in self._unhealthy, clock=self.clock
            )
            group.fail_share, group.delay_s = self._faults.get(spec.release_id, (0.0, 0.0))
            self.groups.append(group)
            return group
        finally:
            self.running -= 1

    async def shutdown(self) -> None:
        self.shut_down = True
