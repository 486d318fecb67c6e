"""Thread-pool helpers for I/O-bound plugin work (downloads, calls to external APIs).

Plugin code may not import ``threading`` or ``multiprocessing`` (the security scan refuses
them); these platform helpers run the threads on its behalf. Threads help only while the work
waits (network, disk, a C library that releases the GIL); pure Python work gains nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_IO_WORKERS = 8
DEFAULT_API_CONCURRENCY = 8


def parallel_io(
    fn: Callable[[T], R], items: Iterable[T], max_workers: int | None = None
) -> list[R]:
    """``[fn(item) for item in items]``, computed on up to ``max_workers`` threads.

    Results keep the order of ``items``. The first exception raised by ``fn`` propagates
    (after the calls already started have finished). ``max_workers`` defaults to
    :data:`DEFAULT_IO_WORKERS`, and is never more than the number of items.
    """
    work = list(items)
    if not work:
        return []
    workers = max(1, min(max_workers or DEFAULT_IO_WORKERS, len(work)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plugin-io") as pool:
        return list(pool.map(fn, work))


def concurrent_api_calls(
    fn: Callable[[T], R],
    items: Iterable[T],
    max_concurrency: int = DEFAULT_API_CONCURRENCY,
    retries: int = 0,
    backoff_s: float = 0.5,
    return_exceptions: bool = False,
) -> list[R | BaseException]:
    """Call ``fn(item)`` for every item, at most ``max_concurrency`` at a time.

    A call that raises is retried up to ``retries`` more times, waiting ``backoff_s`` doubled
    after each failure. Results keep the order of ``items``. With ``return_exceptions`` a call
    that still fails gives its exception in place of its result; otherwise the first such
    exception propagates.
    """

    def attempt(item: T) -> R | BaseException:
        delay = backoff_s
        for tries_left in range(retries, -1, -1):
            try:
                return fn(item)
            except Exception as exc:
                if tries_left == 0:
                    if return_exceptions:
                        return exc
                    raise
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    return parallel_io(attempt, items, max_workers=max(1, max_concurrency))
