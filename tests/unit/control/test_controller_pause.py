"""The controller's pause and resume (a takeover hands the controller to a successor): no
pass runs while paused, rollouts in flight may finish first within a bound, a pass under
way ends before pause returns, and resume picks up where the table says."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from test_controller import Harness, run

from plughost.domain.states import Status


def test_a_paused_controller_starts_nothing_until_resumed(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        assert await h.controller.pause(0.0) is True  # nothing in flight
        rel = h.enqueue(h.plugin("alpha"))
        for _ in range(5):
            await h.controller.tick()
        assert h.backend.started == [] and h.status(rel) is Status.QUEUED
        h.controller.resume()
        await h.settle()
        assert h.status(rel) is Status.DEPLOYED and h.route("alpha") == rel.id

    run(scenario)


def test_pause_lets_a_rollout_in_flight_finish_but_starts_no_other(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        first = h.enqueue(h.plugin("alpha"))
        h.backend.hold(first.id)
        await h.until(lambda: h.backend.waiting(first.id))
        pausing = asyncio.create_task(h.controller.pause(5.0))
        second = h.enqueue(h.plugin("beta"))
        await asyncio.sleep(0.05)
        assert not pausing.done()  # waits for the rollout
        h.backend.let_go(first.id)
        assert await asyncio.wait_for(pausing, 5.0) is True
        assert h.status(first) is Status.DEPLOYED
        await h.controller.tick()
        assert h.status(second) is Status.QUEUED and h.backend.started == [first.id]

    run(scenario)


def test_pause_stops_waiting_for_a_rollout_after_its_bound(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        rel = h.enqueue(h.plugin("alpha"))
        h.backend.hold(rel.id)
        await h.until(lambda: h.backend.waiting(rel.id))
        assert await h.controller.pause(0.05) is False  # the successor resumes it
        assert h.status(rel) is Status.IN_PROGRESS
        h.backend.let_go(rel.id)
        h.controller.resume()
        await h.settle()
        assert h.status(rel) is Status.DEPLOYED

    run(scenario)


def test_pause_returns_only_after_a_pass_under_way_ended(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        h.enqueue(h.plugin("alpha"))
        passing = asyncio.create_task(h.controller.tick())
        await asyncio.sleep(0)  # the pass holds the lock, reading the table in a thread
        await h.controller.pause(0.0)
        assert passing.done()
        h.controller.resume()
        await h.settle()

    run(scenario)


def test_a_server_paused_before_its_first_pass_leaves_the_backend_to_its_successor(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        await h.controller.pause(0.0)
        await h.controller.shutdown()
        assert not h.backend.shut_down

    run(scenario)


def test_a_server_that_ran_passes_shuts_its_backend_down_even_when_paused(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        await h.controller.tick()
        await h.controller.pause(0.0)
        await h.controller.shutdown()
        assert h.backend.shut_down

    run(scenario)
