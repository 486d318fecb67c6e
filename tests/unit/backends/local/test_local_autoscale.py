"""The local autoscaler's policy and steps (issue 17), against stand-in replicas."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from plughost.backends.local.autoscale import Autoscaler, ScalePolicy, WakeUnavailable
from plughost.errors import ServiceUnavailableError, Unavailable


def test_a_fixed_count_or_no_range_means_no_autoscaler() -> None:
    assert ScalePolicy.of({"num_replicas": 2, "max_replicas": 4}) is None
    assert ScalePolicy.of({"min_replicas": 2}) is None
    assert ScalePolicy.of({"min_replicas": 1, "max_replicas": "x"}) is None
    policy = ScalePolicy.of({"min_replicas": 1, "max_replicas": 4})
    assert policy == ScalePolicy(1, 4, 2.0, 0.0, 60.0)
    assert [policy.wanted(n) for n in (0, 2, 3, 8, 100)] == [1, 1, 2, 4, 4]


@dataclass(eq=False)
class Replica:
    in_flight: int = 0
    alive: bool = True
    stopped: bool = False

    async def stop(self, drain_timeout_s: float) -> None:
        self.stopped = True


@dataclass
class Spec:
    deployment_name: str = "custom_plugin_x"
    serve_config: dict[str, Any] = field(default_factory=dict)


class Settings:
    drain_timeout_s = 1.0
    warm_spare = False


class Group:
    def __init__(self) -> None:
        self.spec = Spec()
        self.settings = Settings()
        self.replicas: list[Replica] = [Replica()]
        self.retired: set[Replica] = set()

    async def launch(self, hold_fd: int | None = None) -> Replica:
        self.replicas.append(Replica())
        return self.replicas[-1]


def test_it_waits_the_upscale_delay_bursts_at_once_and_retires_one_per_downscale_delay() -> None:
    async def scenario() -> None:
        group = Group()
        scaler = Autoscaler(group, ScalePolicy(1, 4, 1.0, 1.0, 5.0))
        group.replicas[0].in_flight = 2  # 2 wanted, 1 ready: a burst, so at once
        await scaler.step(0.0)
        assert len(group.replicas) == 2
        group.replicas[1].in_flight = 1  # 3 wanted, 2 ready: not a burst, wait 1 s
        await scaler.step(10.0)
        assert len(group.replicas) == 2
        await scaler.step(11.0)
        assert len(group.replicas) == 3 and scaler.target == 3
        for r in group.replicas:
            r.in_flight = 0
        await scaler.step(20.0)
        await scaler.step(24.0)
        assert len(group.replicas) == 3
        await scaler.step(25.0)
        assert len(group.replicas) == 2 and len(group.retired) == 1
        await scaler.step(30.0)
        await scaler.step(35.0)
        assert len(group.replicas) == 1  # never under min_replicas
        assert scaler.target == 1

    asyncio.run(scenario())


def test_min_replicas_0_goes_to_zero_when_idle_and_a_call_wakes_one() -> None:
    policy = ScalePolicy.of({"min_replicas": 0, "scale_to_zero_after_s": 5})
    assert policy is not None and policy.zero_after_s == 5.0 and policy.min_replicas == 1

    async def scenario() -> None:
        group = Group()
        group.settings.replica_start_timeout_s = 5.0  # type: ignore[attr-defined]
        scaler = Autoscaler(group, policy)
        scaler.last_call = 100.0
        await scaler.step(104.0)
        assert len(group.replicas) == 1
        group.replicas[0].in_flight = 1
        await scaler.step(106.0)
        assert len(group.replicas) == 1  # busy: not retired
        group.replicas[0].in_flight = 0
        await scaler.step(106.0)
        assert group.replicas == [] and scaler.at_zero and scaler.target == 0
        await asyncio.gather(*(scaler.wake() for _ in range(5)))
        assert len(group.replicas) == 1 and scaler.cold_start_s() is not None

    asyncio.run(scenario())


class SlowGroup(Group):
    """A group at zero whose replica starts take ``start_s`` (or fail with ``fail``)."""

    def __init__(self, start_s: float, fail: str | None = None) -> None:
        super().__init__()
        self.replicas = []
        self.start_s = start_s
        self.fail = fail
        self.settings.replica_start_timeout_s = 0.1  # type: ignore[attr-defined]

    async def launch(self, hold_fd: int | None = None) -> Replica:
        await asyncio.sleep(self.start_s)
        if self.fail:
            raise RuntimeError(self.fail)
        return await super().launch()


def _woken(group: Group) -> BaseException | None:
    async def scenario() -> BaseException | None:
        scaler = Autoscaler(group, ScalePolicy(1, 2, 1.0, 0.0, 5.0, zero_after_s=1.0))
        try:
            await scaler.wake()
        except Unavailable as exc:
            return exc
        return None

    return asyncio.run(scenario())


def test_a_wake_past_the_start_bound_is_unavailable_with_a_time_to_retry() -> None:
    error = _woken(SlowGroup(start_s=1.0))
    assert isinstance(error, WakeUnavailable) and error.retry_after_s == 1.0
    assert "scaled to zero" in str(error) and "within 0.1 s" in str(error)
    # the service turns it into the contract's 503 with Retry-After (one helper for the
    # restore hold and this)
    wire = ServiceUnavailableError(str(error), None, error.retry_after_s)
    assert wire.status_code == 503 and wire.headers == {"Retry-After": "1"}


def test_a_failed_start_from_zero_is_unavailable_naming_the_failure() -> None:
    error = _woken(SlowGroup(start_s=0.0, fail="boom at import"))
    assert isinstance(error, WakeUnavailable) and "boom at import" in str(error)
    assert error.retry_after_s is not None


def test_retry_after_is_whole_seconds_between_1_and_5() -> None:
    headers = [ServiceUnavailableError("x", None, s).headers["Retry-After"] for s in (0, 0.2, 3.1, 60)]
    assert headers == ["1", "1", "4", "5"]
    assert not hasattr(ServiceUnavailableError("x"), "headers")
