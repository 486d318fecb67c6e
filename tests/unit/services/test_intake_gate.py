"""The intake gate: work in worker threads, at most `size` at once, the rest wait in order."""

from __future__ import annotations

import asyncio
import threading

import pytest

from plughost.services.intake_gate import IntakeGate


async def _until(predicate: object, what: str) -> None:
    for _ in range(3000):
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


def test_at_most_size_run_and_the_rest_wait_their_turn_in_order() -> None:
    async def body() -> None:
        gate = IntakeGate(2)
        release = threading.Event()
        started: list[int] = []
        loop_thread = threading.get_ident()

        def work(n: int) -> int:
            assert threading.get_ident() != loop_thread  # never on the loop
            started.append(n)
            release.wait(30)
            return n * 10

        tasks = [asyncio.create_task(gate.run(work, n)) for n in range(5)]
        await _until(lambda: gate.running == 2 and gate.waiting == 3, "2 running, 3 waiting")
        assert sorted(started) == [0, 1]
        release.set()
        assert await asyncio.gather(*tasks) == [0, 10, 20, 30, 40]
        assert started[2:] == [2, 3, 4]  # queued ones in arrival order
        assert gate.running == 0 and gate.waiting == 0

    asyncio.run(body())


def test_a_cancelled_caller_keeps_its_slot_until_its_thread_ends() -> None:
    async def body() -> None:
        gate = IntakeGate(1)
        release = threading.Event()
        first = asyncio.create_task(gate.run(release.wait, 30))
        await _until(lambda: gate.running == 1, "the first one runs")
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        second = asyncio.create_task(gate.run(lambda: "second"))
        await asyncio.sleep(0.05)
        assert not second.done() and gate.waiting == 1  # the thread still holds the slot
        release.set()
        assert await second == "second"

    asyncio.run(body())


def test_errors_reach_the_caller_and_free_the_slot() -> None:
    async def body() -> None:
        gate = IntakeGate(1)

        def fail() -> None:
            raise ValueError("bad archive")

        with pytest.raises(ValueError, match="bad archive"):
            await gate.run(fail)
        assert await gate.run(lambda: 7) == 7

    asyncio.run(body())


def test_a_gate_needs_a_slot() -> None:
    with pytest.raises(ValueError):
        IntakeGate(0)
