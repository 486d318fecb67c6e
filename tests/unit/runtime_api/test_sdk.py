"""shared.plugins.sdk.parallel_io and concurrent_api_calls."""

from __future__ import annotations

import threading
import time

import pytest
from shared.plugins.sdk import concurrent_api_calls, parallel_io


def test_parallel_io_keeps_the_order_and_overlaps_waiting_calls() -> None:
    # every call waits until all eight are running at once: calls run one after another
    # would break the barrier at its timeout instead
    together = threading.Barrier(8, timeout=30)

    def square_once_all_wait(x: int) -> int:
        together.wait()
        return x * x

    assert parallel_io(square_once_all_wait, range(8), max_workers=8) == [x * x for x in range(8)]


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
