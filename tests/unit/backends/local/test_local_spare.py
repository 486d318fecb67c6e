"""The warm spare of a group at zero (issue 17): the worker's entry splits its hold
descriptor off, a spare loads only on its byte and goes away on end of file, and the
autoscaler keeps one at zero and wakes through it, never through a dead one."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from test_local_autoscale import Group, Replica  # the stand-ins of that module

from plughost.backends.local.autoscale import SPARE_FAILURES_MAX, Autoscaler, ScalePolicy
from plughost.backends.local.spare import Spare
from plughost.replica.spare import split_hold


def test_the_entry_takes_its_hold_descriptor_and_leaves_the_worker_its_arguments() -> None:
    fd, rest = split_hold(["--socket", "/s", "--hold-fd", "7", "--plugin-dir", "/plugin"])
    assert fd == 7 and rest == ["--socket", "/s", "--plugin-dir", "/plugin"]
    with pytest.raises(ValueError):
        split_hold(["--socket", "/s"])


async def _held_launch(hold_fd: int) -> str:
    """A stand-in replica start: blocks on the byte like plughost.replica.spare."""
    byte = await asyncio.to_thread(os.read, hold_fd, 1)
    if not byte:
        raise RuntimeError("replica exited with code 0 before becoming ready")
    return "replica"


def test_a_spare_loads_on_its_byte_and_ends_on_end_of_file() -> None:
    async def scenario() -> None:
        woken = Spare(_held_launch)
        await asyncio.sleep(0.05)
        assert woken.usable and not woken.task.done()
        assert await woken.go(5.0) == "replica"
        assert not woken.usable
        dropped = Spare(_held_launch)
        dropped.discard()
        await asyncio.wait([dropped.task], timeout=5.0)
        assert dropped.task.done() and isinstance(dropped.task.exception(), RuntimeError)
        assert not dropped.usable

    asyncio.run(scenario())


class SpareGroup(Group):
    """A group at zero whose launches with a hold descriptor behave like a spare's."""

    def __init__(self, warm_spare: bool = True, spare_dies: bool = False) -> None:
        super().__init__()
        self.replicas = []
        self.settings.warm_spare = warm_spare  # type: ignore[attr-defined]
        self.settings.replica_start_timeout_s = 5.0  # type: ignore[attr-defined]
        self.spare_dies = spare_dies
        self.cold_launches = 0
        self.spares_started = 0

    async def launch(self, hold_fd: int | None = None) -> Replica:
        if hold_fd is None:
            self.cold_launches += 1
        else:
            self.spares_started += 1
            if self.spare_dies:
                raise RuntimeError("spare died")
            await _held_launch(hold_fd)
        return await super().launch()


def _scaler(group: Group) -> Autoscaler:
    return Autoscaler(group, ScalePolicy(1, 2, 1.0, 0.0, 5.0, zero_after_s=1.0))


def test_at_zero_the_scaler_keeps_a_spare_and_the_wake_goes_through_it() -> None:
    async def scenario() -> SpareGroup:
        group = SpareGroup()
        scaler = _scaler(group)
        await scaler.step(0.0)
        spare = scaler.spare
        assert spare is not None and spare.usable
        await scaler.step(0.25)
        assert scaler.spare is spare  # one spare, not one per tick
        await scaler.wake()
        assert len(group.replicas) == 1 and scaler.spare is None
        scaler.stop()
        return group

    group = asyncio.run(scenario())
    assert group.spares_started == 1 and group.cold_launches == 0


def test_without_the_setting_or_with_spares_that_die_the_wake_starts_cold() -> None:
    async def scenario(group: SpareGroup) -> Autoscaler:
        scaler = _scaler(group)
        for tick in range(SPARE_FAILURES_MAX + 3):
            await scaler.step(tick * 0.25)
            await asyncio.sleep(0.01)  # a dying spare's start ends
        await scaler.wake()
        scaler.stop()
        return scaler

    off = SpareGroup(warm_spare=False)
    asyncio.run(scenario(off))
    assert off.spares_started == 0 and off.cold_launches == 1
    dying = SpareGroup(spare_dies=True)
    asyncio.run(scenario(dying))
    assert dying.spares_started == SPARE_FAILURES_MAX and dying.cold_launches == 1
    assert len(dying.replicas) == 1


def test_stopping_the_scaler_lets_its_spare_go() -> None:
    async def scenario() -> Any:
        group = SpareGroup()
        scaler = _scaler(group)
        await scaler.step(0.0)
        spare = scaler.spare
        assert spare is not None
        scaler.stop()
        await asyncio.wait([spare.task], timeout=5.0)
        return spare

    spare = asyncio.run(scenario())
    assert spare.task.done() and not spare.usable
