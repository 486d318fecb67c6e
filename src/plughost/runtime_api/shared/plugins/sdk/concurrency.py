"""Concurrency helpers for I/O-bound plugin work (downloads, calls to external APIs).

Plugin code may not import ``threading`` or ``multiprocessing`` (the security scan refuses
them); these platform helpers run the threads and event loops on its behalf. Threads help only
while the work waits (network, disk, a C library that releases the GIL).

Each helper answers two call forms:

- Mixpeek's, as its documentation calls them: ``parallel_io(items, process_fn, max_workers=8)``
  returns ``{index: result}`` without the failed items; ``concurrent_api_calls(items,
  async_fn, max_concurrent=10)`` returns a list aligned with ``items``, None for a failed call.
- plughost's earlier one, function first: ``parallel_io(fn, items)`` and
  ``concurrent_api_calls(fn, items, max_concurrency=8, retries=0, ...)`` return a list in item
  order and raise the first failure.

The function-first form is recognised by its first argument being callable and not iterable
(a list, a Series or a generator of items never is), or by the keyword ``fn=``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ...loggers.services import get_logger

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_IO_WORKERS = 8
DEFAULT_API_CONCURRENCY = 8  # the function-first form's default
DEFAULT_MAX_CONCURRENT = 10  # Mixpeek's default for concurrent_api_calls

_log = get_logger("shared.plugins.sdk")


def _function_first(first: Any, fn: Any) -> bool:
    if fn is not None:
        return True
    return callable(first) and not isinstance(first, Iterable)


def _items_and_fn(first: Any, second: Any, fn: Any, helper: str) -> tuple[list[Any], Any]:
    """(items, function) of a function-first call: ``helper(fn, items)`` or ``fn=`` keyword."""
    function, items = (fn, first) if fn is not None else (first, second)
    if items is None or not callable(function):
        raise TypeError(f"{helper}() needs the items and a function to call on each")
    return list(items), function


def parallel_io(
    items: Any = None,
    process_fn: Callable[[Any], Any] | None = None,
    max_workers: int | None = None,
    *,
    fn: Callable[[Any], Any] | None = None,
) -> Any:
    """Call a function on every item on up to ``max_workers`` threads (default 8, never more
    than the number of items).

    ``parallel_io(items, process_fn, max_workers=8)`` (keywords or positional): returns a dict
    ``{index in items: result}`` in index order; an item whose call raised is absent from it
    and its error is logged (``shared.plugins.sdk``, WARNING).

    ``parallel_io(fn, items, max_workers=None)``: returns ``[fn(item) for item in items]``; the
    first exception raised propagates after the calls already started have finished.
    """
    if _function_first(items, fn):
        work, function = _items_and_fn(items, process_fn, fn, "parallel_io")
        if not work:
            return []
        with _pool(max_workers, len(work), "plugin-io") as pool:
            return list(pool.map(function, work))
    if items is None or process_fn is None:
        raise TypeError("parallel_io() needs items and process_fn")
    work = list(items)
    results: dict[int, Any] = {}
    if not work:
        return results
    with _pool(max_workers, len(work), "plugin-io") as pool:
        futures = [pool.submit(process_fn, item) for item in work]
        for index, future in enumerate(futures):
            try:
                results[index] = future.result()
            except Exception as exc:  # noqa: BLE001 - Mixpeek's contract: failed items are left out
                _log.warning("parallel_io: item %d failed: %s: %s", index, type(exc).__name__, exc)
    return results


def _pool(max_workers: int | None, count: int, prefix: str) -> ThreadPoolExecutor:
    workers = max(1, min(max_workers or DEFAULT_IO_WORKERS, count))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=prefix)


def concurrent_api_calls(
    items: Any = None,
    async_fn: Callable[[Any], Any] | None = None,
    max_concurrent: int | None = None,
    retries: int = 0,
    backoff_s: float = 0.5,
    return_exceptions: bool = False,
    *,
    fn: Callable[[Any], Any] | None = None,
    max_concurrency: int | None = None,
) -> list[Any]:
    """Call a function on every item, at most ``max_concurrent`` calls at a time.

    ``concurrent_api_calls(items, async_fn, max_concurrent=10)`` (keywords or positional):
    ``async_fn`` is an ``async def`` (a plain function, or one returning an awaitable, works
    too: it runs on a helper thread). Callable from synchronous code: with no event loop
    running in this thread the calls run on a private loop; inside a running loop (a plain
    function called from an ``async`` handler) they run on a helper thread with its own loop,
    so ``async_fn`` must not use objects bound to the caller's loop. Returns a list aligned
    with ``items``: each result, or None where the call raised (logged at WARNING; with
    ``return_exceptions=True``, the exception instead of None).

    ``concurrent_api_calls(fn, items, max_concurrency=8, retries=0, backoff_s=0.5,
    return_exceptions=False)``: plain ``fn`` on threads; a failing call is retried up to
    ``retries`` more times after ``backoff_s``, doubled each time; a call that still fails
    raises (or gives its exception in place with ``return_exceptions``).

    Both forms accept ``retries`` and ``backoff_s``.
    """
    if _function_first(items, fn):
        work, function = _items_and_fn(items, async_fn, fn, "concurrent_api_calls")
        limit = max_concurrency or max_concurrent or DEFAULT_API_CONCURRENCY
        return _threaded_calls(function, work, limit, retries, backoff_s, return_exceptions)
    if items is None or async_fn is None:
        raise TypeError("concurrent_api_calls() needs items and async_fn")
    work = list(items)
    if not work:
        return []
    limit = max(1, max_concurrent or max_concurrency or DEFAULT_MAX_CONCURRENT)

    def gather() -> Awaitable[list[Any]]:
        return _gather(async_fn, work, limit, retries, backoff_s, return_exceptions)

    return run_coroutine(gather)


def _threaded_calls(
    fn: Callable[[Any], Any],
    work: list[Any],
    limit: int,
    retries: int,
    backoff_s: float,
    return_exceptions: bool,
) -> list[Any]:
    def attempt(item: Any) -> Any:
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

    if not work:
        return []
    with _pool(max(1, limit), len(work), "plugin-api") as pool:
        return list(pool.map(attempt, work))


async def _gather(
    fn: Callable[[Any], Any],
    work: list[Any],
    limit: int,
    retries: int,
    backoff_s: float,
    return_exceptions: bool,
) -> list[Any]:
    gate = asyncio.Semaphore(limit)
    is_async = inspect.iscoroutinefunction(fn)

    async def call(item: Any) -> Any:
        if is_async:
            return await fn(item)
        # a plain function may block: a thread keeps the other calls going
        result = await asyncio.to_thread(fn, item)
        return await result if inspect.isawaitable(result) else result

    async def one(index: int, item: Any) -> Any:
        delay = backoff_s
        async with gate:
            for tries_left in range(retries, -1, -1):
                try:
                    return await call(item)
                except Exception as exc:  # noqa: BLE001 - Mixpeek's contract: None for a failed call
                    if tries_left == 0:
                        _log.warning(
                            "concurrent_api_calls: item %d failed: %s: %s",
                            index,
                            type(exc).__name__,
                            exc,
                        )
                        return exc if return_exceptions else None
                    await asyncio.sleep(delay)
                    delay *= 2
        raise AssertionError("unreachable")

    return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(work))))


def run_coroutine(make: Callable[[], Awaitable[R]]) -> R:
    """Run the awaitable ``make()`` returns to completion from synchronous code.

    Without a running loop in this thread it runs on a new private loop (the thread's current
    loop, if the plugin set one, is left as it was); inside a running loop, on a helper
    thread with its own loop, blocking the caller until it is done.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _on_private_loop(make)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plugin-loop") as pool:
        return pool.submit(_on_private_loop, make).result()


def _on_private_loop(make: Callable[[], Awaitable[R]]) -> R:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(make())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
