"""Micro-batching in the replica (plughost.replica.batching.Batcher), driven with fake batch
handlers: batches leave full or at their wait timeout, one at a time; each caller gets its
own element; failures reach every caller; gone callers are skipped or cancel the batch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plughost.replica.batching import Batcher, PluginError


class Recorder:
    """A batch handler answering ``n * 10`` per call, recording each batch's inputs, its
    parameters and how many batches ran at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[Any]] = []
        self.parameters: list[list[dict[str, Any]]] = []
        self.running = 0
        self.most_at_once = 0
        self.delay = delay

    async def __call__(
        self, inputs: list[dict[str, Any]], parameters: list[dict[str, Any]], on_thread: Any
    ) -> list[int]:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.batches.append([i["n"] for i in inputs])
        self.parameters.append(parameters)
        try:
            await asyncio.sleep(self.delay)
            return [i["n"] * 10 for i in inputs]
        finally:
            self.running -= 1


def test_a_full_batch_leaves_at_once_without_waiting_for_the_timeout() -> None:
    async def main() -> tuple[list[tuple[Any, int]], list[list[Any]], float]:
        run = Recorder()
        batcher = Batcher(run, max_size=3, wait_s=30.0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit({"n": n}, {}) for n in range(3))), 5
        )
        return results, run.batches, loop.time() - began

    results, batches, elapsed = asyncio.run(main())
    assert batches == [[0, 1, 2]]
    assert elapsed < 5
    assert [r for r, _ in results] == [0, 10, 20]


def test_batches_are_capped_at_max_size_and_run_one_at_a_time() -> None:
    async def main() -> tuple[list[tuple[Any, int]], Recorder]:
        run = Recorder(delay=0.05)
        batcher = Batcher(run, max_size=3, wait_s=0.2)
        results = await asyncio.gather(*(batcher.submit({"n": n}, {}) for n in range(7)))
        return results, run

    results, run = asyncio.run(main())
    assert run.batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert run.most_at_once == 1
    assert [r for r, _ in results] == [n * 10 for n in range(7)]
    # the first call answered from each batch carries the batch's size, the others 0
    assert [size for _, size in results] == [3, 0, 0, 3, 0, 0, 1]


def test_a_partial_batch_leaves_when_its_oldest_call_has_waited_the_timeout() -> None:
    async def main() -> tuple[list[tuple[Any, int]], list[list[Any]], float]:
        run = Recorder()
        batcher = Batcher(run, max_size=10, wait_s=0.15)
        loop = asyncio.get_running_loop()
        began = loop.time()
        first = asyncio.ensure_future(batcher.submit({"n": 1}, {}))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit({"n": 2}, {}))
        results = await asyncio.wait_for(asyncio.gather(first, second), 5)
        return results, run.batches, loop.time() - began

    results, batches, elapsed = asyncio.run(main())
    assert batches == [[1, 2]], "calls within the wait share one batch"
    assert 0.14 <= elapsed < 1.0, "the batch left at the oldest call's timeout, not later"
    assert results == [(10, 2), (20, 0)]


def test_each_caller_gets_its_own_element_and_its_own_parameters_reach_the_handler() -> None:
    async def main() -> tuple[list[tuple[Any, int]], Recorder]:
        run = Recorder(delay=0.01)
        batcher = Batcher(run, max_size=4, wait_s=0.05)

        async def call(n: int) -> tuple[Any, int]:
            await asyncio.sleep(0.001 * (n % 3))  # arrivals interleave
            return await batcher.submit({"n": n}, {"p": n})

        results = await asyncio.gather(*(call(n) for n in range(10)))
        return results, run

    results, run = asyncio.run(main())
    assert [r for r, _ in results] == [n * 10 for n in range(10)]
    for batch, parameters in zip(run.batches, run.parameters, strict=True):
        assert [p["p"] for p in parameters] == batch
    assert sum(size for _, size in results) == 10, "each batch's size is told exactly once"


def test_an_exception_of_the_handler_fails_every_call_of_the_batch() -> None:
    boom = ValueError("boom")

    async def run(inputs: list[Any], parameters: list[Any], on_thread: Any) -> Any:
        raise boom

    async def main() -> list[Any]:
        batcher = Batcher(run, max_size=3, wait_s=0.05)
        return await asyncio.gather(
            *(batcher.submit({"n": n}, {}) for n in range(3)), return_exceptions=True
        )

    assert asyncio.run(main()) == [boom, boom, boom]


@pytest.mark.parametrize(
    ("answer", "needle"), [([1], "1 results for 2 calls"), ({"a": 1}, "returned dict")]
)
def test_a_result_that_is_not_one_element_per_call_is_a_plugin_error(
    answer: Any, needle: str
) -> None:
    async def run(inputs: list[Any], parameters: list[Any], on_thread: Any) -> Any:
        return answer

    async def main() -> list[Any]:
        batcher = Batcher(run, max_size=2, wait_s=0.05)
        return await asyncio.gather(
            *(batcher.submit({"n": n}, {}) for n in range(2)), return_exceptions=True
        )

    outcomes = asyncio.run(main())
    assert len(outcomes) == 2
    for outcome in outcomes:
        assert isinstance(outcome, PluginError)
        assert needle in str(outcome)


def test_an_awaitable_result_is_awaited() -> None:
    async def answers(inputs: list[Any]) -> list[Any]:
        return [i["n"] + 1 for i in inputs]

    def run(inputs: list[Any], parameters: list[Any], on_thread: Any) -> Any:
        async def outer() -> Any:
            return answers(inputs)  # a coroutine whose value is the result

        return outer()

    async def main() -> list[Any]:
        batcher = Batcher(run, max_size=2, wait_s=0.05)
        return await asyncio.gather(*(batcher.submit({"n": n}, {}) for n in range(2)))

    assert asyncio.run(main()) == [(1, 2), (2, 0)]


def test_a_caller_gone_before_its_batch_left_is_not_put_in_the_batch() -> None:
    async def main() -> tuple[Any, Any, list[list[Any]]]:
        run = Recorder()
        batcher = Batcher(run, max_size=3, wait_s=0.1)
        calls = [asyncio.ensure_future(batcher.submit({"n": n}, {})) for n in range(3)]
        await asyncio.sleep(0)  # all three are queued (a full batch would leave now)
        calls[1].cancel()
        first, third = await asyncio.wait_for(asyncio.gather(calls[0], calls[2]), 5)
        return first, third, run.batches

    first, third, batches = asyncio.run(main())
    assert batches == [[0, 2]]
    assert first == (0, 2) and third == (20, 0)


def test_a_batch_whose_callers_all_left_is_cancelled_and_batching_goes_on() -> None:
    async def main() -> tuple[list[str], list[list[Any]], Any]:
        events: list[str] = []
        started = asyncio.Event()
        batches: list[list[Any]] = []

        async def run(inputs: list[Any], parameters: list[Any], on_thread: Any) -> Any:
            batches.append([i["n"] for i in inputs])
            if inputs[0]["n"] == "later":
                return ["ok"]
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                events.append("batch cancelled")
                raise
            return [None] * len(inputs)

        batcher = Batcher(run, max_size=2, wait_s=0.01)
        calls = [asyncio.ensure_future(batcher.submit({"n": n}, {})) for n in range(2)]
        await asyncio.wait_for(started.wait(), 5)
        calls[0].cancel()
        await asyncio.sleep(0.05)
        events.append("one left" if not events else "cancelled too early")
        calls[1].cancel()
        await asyncio.sleep(0.05)
        later = await asyncio.wait_for(batcher.submit({"n": "later"}, {}), 5)
        return events, batches, later

    events, batches, later = asyncio.run(main())
    assert events == ["one left", "batch cancelled"]
    assert batches == [[0, 1], ["later"]]
    assert later == ("ok", 1)
