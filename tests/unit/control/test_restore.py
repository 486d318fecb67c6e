"""Calls for routes under restore after a server start wait, bounded (issue 14)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plughost.control.restore import RestoreHoldExpired, Restores
from plughost.domain.release import ReleaseView


def _release(rid: int = 7, plugin_id: str = "emb_1_0_0", name: str = "emb") -> Any:
    fields = {f: None for f in ReleaseView.__dataclass_fields__}
    fields.update(id=rid, namespace_id="ns", plugin_id=plugin_id, name=name)
    return ReleaseView(**fields)


def test_a_route_under_restore_waits_until_it_is_published() -> None:
    async def scenario() -> tuple[bool, list[bool], bool]:
        restores, published, answers = Restores(), [False], []
        asked = asyncio.Event()
        restores.begin(_release())
        restores.scanned()

        def is_published() -> bool:
            answers.append(published[0])
            asked.set()
            return published[0]

        async def restore_later() -> None:
            await asked.wait()  # the hold saw the route unpublished and waits
            published[0] = True
            restores.end(7)

        task = asyncio.create_task(restore_later())
        held = await restores.hold("ns", "emb", 30, is_published)
        done_when_held = task.done()
        await task
        return held, answers, done_when_held

    held, answers, restored_first = asyncio.run(scenario())
    # it waited: unpublished at first, and it let go only once the restore published it
    assert held and restored_first and answers[0] is False and answers[-1] is True


def test_a_route_nothing_restores_is_a_plain_miss_at_once() -> None:
    async def scenario() -> bool:
        restores = Restores()
        restores.begin(_release())
        restores.scanned()
        return await restores.hold("ns", "other", 5, lambda: False)

    assert asyncio.run(scenario()) is False


def test_a_hold_that_runs_out_is_a_503_with_retry_after() -> None:
    async def scenario() -> None:
        restores = Restores()
        restores.begin(_release())
        restores.scanned()
        await restores.hold("ns", "custom_plugin_emb_1_0_0", 0.1, lambda: False)

    with pytest.raises(RestoreHoldExpired) as caught:
        asyncio.run(scenario())
    assert caught.value.status_code == 503
    assert caught.value.headers["Retry-After"].isdigit()
    assert "being restored" in caught.value.message


def test_before_the_first_pass_any_route_waits_for_it() -> None:
    async def scenario() -> tuple[bool, bool]:
        restores, done = Restores(), [False]
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, restores.begin, _release())
        loop.call_later(0.1, restores.scanned)
        loop.call_later(0.25, lambda: done.__setitem__(0, True))
        loop.call_later(0.25, restores.end, 7)
        unknown = await restores.hold("ns", "nothing", 5, lambda: False)
        known = await restores.hold("ns", "emb_1_0_0", 5, lambda: done[0])
        return unknown, known

    assert asyncio.run(scenario()) == (False, True)


def test_a_failed_restore_ends_the_wait_as_a_miss() -> None:
    async def scenario() -> bool:
        restores = Restores()
        restores.begin(_release())
        restores.scanned()
        asyncio.get_running_loop().call_later(0.1, restores.end, 7)
        return await restores.hold("ns", "emb", 5, lambda: False)

    assert asyncio.run(scenario()) is False


def test_the_end_of_a_restore_is_announced_to_listeners() -> None:
    async def scenario() -> list[int]:
        restores, seen = Restores(), []
        restores.listeners.append(lambda view: seen.append(view.id))
        restores.begin(_release())
        restores.end(7)
        restores.end(7)  # once only
        return seen

    assert asyncio.run(scenario()) == [7]
