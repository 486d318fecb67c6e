"""shared.plugins.sdk.parallel_io and concurrent_api_calls, in both call forms: Mixpeek's
(items first, as its documentation calls them) and plughost's earlier one (function first)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from shared.plugins.sdk import concurrent_api_calls, parallel_io


# -- Mixpeek's form ---------------------------------------------------------------------------
def test_parallel_io_as_the_docs_call_it_returns_results_keyed_by_index() -> None:
    # every call waits until all four are running at once: calls run one after another
    # would break the barrier at its timeout instead
    together = threading.Barrier(4, timeout=30)

    def load(url: str) -> str:
        together.wait()
        return url.upper()

    urls = ["a", "b", "c", "d"]
    by_keyword = parallel_io(items=urls, process_fn=load, max_workers=8)
    assert by_keyword == {0: "A", 1: "B", 2: "C", 3: "D"}
    assert parallel_io(urls, load, max_workers=4) == by_keyword  # positional, as in the docs


def test_parallel_io_leaves_failed_items_out_and_logs_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.plugins.sdk"):
        got = parallel_io(items=[1, 0, 4], process_fn=lambda x: 8 // x)
    assert got == {0: 8, 2: 2}
    assert [i for i in range(3) if i in got] == [0, 2]  # the docs' `if i in downloaded`
    assert "item 1 failed: ZeroDivisionError" in caplog.text
    assert parallel_io(items=[], process_fn=str) == {}


def test_concurrent_api_calls_as_the_docs_call_it_aligns_results_and_gives_none_for_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = {"now": 0, "peak": 0}

    async def enrich(text: str) -> dict[str, str]:
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        await asyncio.sleep(0)  # let the other calls start while this one waits
        running["now"] -= 1
        if text == "bad":
            raise RuntimeError("the API said no")
        return {"entities": text}

    texts = ["a", "bad", "c", "d", "e", "f", "g"]
    with caplog.at_level(logging.WARNING, logger="shared.plugins.sdk"):
        results = concurrent_api_calls(items=texts, async_fn=enrich, max_concurrent=3)
    assert results == [None if t == "bad" else {"entities": t} for t in texts]
    assert [r["entities"] if r else {} for r in results][1] == {}  # the docs' `r.data if r`
    assert running["peak"] == 3
    assert "item 1 failed: RuntimeError: the API said no" in caplog.text
    assert concurrent_api_calls([1, 2], enrich) == [{"entities": 1}, {"entities": 2}]


def test_concurrent_api_calls_works_from_inside_a_running_event_loop() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def handler() -> list[int]:
        # a synchronous helper called by async code: the loop is running in this thread
        return concurrent_api_calls(items=[1, 2, 3], async_fn=double, max_concurrent=2)

    assert asyncio.run(handler()) == [2, 4, 6]


def test_concurrent_api_calls_leaves_the_plugins_own_loop_in_place() -> None:
    # the docs' older examples keep a loop of their own and run_until_complete on it
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:

        async def one(x: int) -> int:
            return x

        assert concurrent_api_calls(items=[5], async_fn=one) == [5]
        assert asyncio.get_event_loop() is loop
        assert loop.run_until_complete(one(7)) == 7
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_concurrent_api_calls_accepts_plain_functions_and_retries() -> None:
    attempts: dict[int, int] = {}

    def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if x == 1 and attempts[x] < 2:
            raise ConnectionError("try again")
        return x * 3

    got = concurrent_api_calls(items=[0, 1], async_fn=flaky, retries=1, backoff_s=0)
    assert got == [0, 3] and attempts == {0: 1, 1: 2}
    errors = concurrent_api_calls(
        items=[1], async_fn=lambda x: 1 // 0, return_exceptions=True, max_concurrent=1
    )
    assert isinstance(errors[0], ZeroDivisionError)


def test_missing_arguments_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="process_fn"):
        parallel_io(items=[1])
    with pytest.raises(TypeError, match="async_fn"):
        concurrent_api_calls(items=[1])


# -- plughost's function-first form -----------------------------------------------------------
def test_parallel_io_keeps_the_order_and_overlaps_waiting_calls() -> None:
    together = threading.Barrier(8, timeout=30)

    def square_once_all_wait(x: int) -> int:
        together.wait()
        return x * x

    assert parallel_io(square_once_all_wait, range(8), max_workers=8) == [x * x for x in range(8)]
    assert parallel_io(fn=str, items=[1, 2]) == ["1", "2"]


def test_parallel_io_of_nothing_is_empty_and_errors_propagate() -> None:
    assert parallel_io(str, []) == []
    with pytest.raises(ZeroDivisionError):
        parallel_io(lambda x: 1 / x, [1, 0])


def test_concurrent_api_calls_bounds_concurrency() -> None:
    lock = threading.Lock()
    running = {"now": 0, "peak": 0}

    def call(x: int) -> int:
        with lock:
            running["now"] += 1
            running["peak"] = max(running["peak"], running["now"])
        time.sleep(0.02)
        with lock:
            running["now"] -= 1
        return x

    assert concurrent_api_calls(call, range(10), max_concurrency=3) == list(range(10))
    assert running["peak"] <= 3


def test_concurrent_api_calls_retries_then_returns_or_raises_the_error() -> None:
    attempts: dict[int, int] = {}

    def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if x == 1 and attempts[x] < 3:
            raise ConnectionError("try again")
        if x == 2:
            raise ValueError("always")
        return x

    results = concurrent_api_calls(flaky, [0, 1, 2], retries=2, backoff_s=0, return_exceptions=True)
    assert results[:2] == [0, 1]
    assert isinstance(results[2], ValueError)
    assert attempts == {0: 1, 1: 3, 2: 3}
    with pytest.raises(ValueError, match="always"):
        concurrent_api_calls(flaky, [2], backoff_s=0)
