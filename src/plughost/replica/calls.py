"""How the replica runs one call (beyond the quick inline path of :mod:`.server`): under the
call's deadline, through the micro-batcher when there is one, streaming a generator's items,
and what it answers when the call is stopped (deadline, cancel). See :mod:`.server`."""

from __future__ import annotations

import asyncio
import inspect
import logging
from concurrent.futures import Future
from typing import Any, Protocol

from plughost.replica.batching import Batcher
from plughost.replica.invoke import ServiceInvoker
from plughost.replica.protocol import (
    CANCELLED_ERROR,
    TIMEOUT_ERROR,
    WORKER_ORIGIN,
    ResultEncodingError,
    encode_end_reply,
    encode_error_reply,
    encode_item_reply,
    encode_ok_reply,
    encode_result,
)

logger = logging.getLogger("plughost.replica.server")

VALIDATION_ERROR = "ValidationError"


class Sender(Protocol):
    """A connection a reply frame is queued on."""

    def send(self, body: bytes) -> None: ...


def refused(request_id: int | None, type_name: str, message: str) -> bytes:
    """The error reply to a request the worker refuses itself: marked as the worker's, so the
    host tells it apart from an exception the plugin raised."""
    return encode_error_reply(request_id, type_name, message, WORKER_ORIGIN)


def call_timeout(request: dict[str, Any]) -> float | None:
    """The call's ``timeout`` in seconds (None: no deadline); TypeError when not a number."""
    timeout = request.get("timeout")
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be a number of seconds")
    return float(timeout)


def streams(result: Any) -> bool:
    return inspect.isgenerator(result) or inspect.isasyncgen(result)


_END = object()


def _next_item(generator: Any) -> Any:
    """The generator's next item, or _END (run in the plugin thread)."""
    return next(generator, _END)


def call_arguments(request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``inputs`` and ``parameters`` of a call, from the request or its spliced ``body``.

    Raises TypeError when either is present but not a JSON object.
    """
    source = request.get("body", request)
    if not isinstance(source, dict):
        raise TypeError("request body must be a JSON object")
    inputs = source.get("inputs") or {}
    parameters = source.get("parameters") or {}
    if not isinstance(inputs, dict):
        raise TypeError("inputs must be a JSON object")
    if not isinstance(parameters, dict):
        raise TypeError("parameters must be a JSON object")
    return inputs, parameters


class CallRunner:
    """Runs calls for the server; ``request_timeout_s``: the release's deadline, for calls
    that bring none or a longer one."""

    def __init__(
        self, invoker: ServiceInvoker, batcher: Batcher | None, request_timeout_s: float | None
    ) -> None:
        self._invoker = invoker
        self._batcher = batcher
        self._request_timeout_s = request_timeout_s

    async def run(
        self,
        conn: Sender,
        request_id: int,
        request: dict[str, Any],
        started: tuple[Any] | None = None,
    ) -> None:
        """Answer one call under its deadline: run it (or await what ``started`` holds, the
        handler's return value already), stream it if it is a generator, and reply."""
        try:
            inputs, parameters = call_arguments(request)
            timeout = call_timeout(request)
        except TypeError as exc:
            conn.send(refused(request_id, VALIDATION_ERROR, str(exc)))
            return
        if self._request_timeout_s is not None:  # a call may only lower it
            timeout = self._request_timeout_s if timeout is None else min(
                timeout, self._request_timeout_s)
        threads: list[Future[Any]] = []  # the plugin thread's futures of this call
        loop = asyncio.get_running_loop()
        scope = asyncio.timeout_at(None if timeout is None else loop.time() + timeout)
        batch = 0
        try:
            async with scope:
                if started is not None:
                    result = started[0]
                elif self._batcher is not None:
                    result, batch = await self._batcher.submit(inputs, parameters, threads.append)
                else:
                    result = await self._invoker.call(inputs, parameters, threads.append)
                while inspect.isawaitable(result):
                    result = await result
                if streams(result):
                    await self._stream(conn, request_id, result, threads)
                    return
        except TimeoutError as exc:
            if not scope.expired():
                conn.send(failure_reply(request_id, exc))  # the plugin's own TimeoutError
                return
            self._stopped(conn, request_id, threads, TIMEOUT_ERROR,
                          f"the call passed its deadline of {timeout:g} s")
            return
        except asyncio.CancelledError:  # a cancel request, or a stop past the drain timeout
            self._stopped(conn, request_id, threads, CANCELLED_ERROR, "the call was cancelled")
            return
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a reply, logged in _failure_reply
            conn.send(failure_reply(request_id, exc))
            return
        conn.send(encode_reply(request_id, result, batch))

    def _stopped(
        self,
        conn: Sender,
        request_id: int,
        threads: list[Future[Any]],
        type_name: str,
        message: str,
    ) -> None:
        """Reply to a call stopped by its deadline or a cancel. A plain handler still running
        in the plugin thread is said to run (the replica is busy until it returns), and an
        end frame follows once it has."""
        running = [f for f in threads if f.running()]
        conn.send(encode_error_reply(request_id, type_name, message, WORKER_ORIGIN, bool(running)))
        if running:
            loop = asyncio.get_running_loop()

            def freed(_future: Future[Any]) -> None:
                try:
                    loop.call_soon_threadsafe(conn.send, encode_end_reply(request_id))
                except RuntimeError:  # the loop is closed: the replica is stopping
                    pass

            running[-1].add_done_callback(freed)

    async def _stream(
        self, conn: Sender, request_id: int, generator: Any, threads: list[Future[Any]]
    ) -> None:
        """Send each item as it is yielded, then the end frame. A plain generator steps in
        the plugin thread; it is closed there when the stream ends early."""
        if inspect.isasyncgen(generator):
            try:
                async for item in generator:
                    conn.send(encode_item_reply(request_id, encode_result(item)))
            finally:
                await _close_quietly(generator)
        else:
            finished = False
            try:
                while True:
                    threads.clear()
                    item = await self._invoker.in_thread(
                        _next_item, generator, on_thread=threads.append)
                    if item is _END:
                        finished = True
                        break
                    conn.send(encode_item_reply(request_id, encode_result(item)))
            finally:
                if not finished:
                    self._invoker.submit(generator.close)
        conn.send(encode_end_reply(request_id))


async def _close_quietly(generator: Any) -> None:
    try:
        await generator.aclose()
    except (Exception, asyncio.CancelledError):
        logger.debug("closing a stream's generator raised", exc_info=True)


def failure_reply(request_id: int, exc: BaseException) -> bytes:
    logger.warning("plugin raised %s", type(exc).__name__, exc_info=exc)
    return encode_error_reply(request_id, type(exc).__name__, str(exc))


def encode_reply(request_id: int, result: Any, batch: int = 0) -> bytes:
    try:
        return encode_ok_reply(request_id, encode_result(result), batch)
    except ResultEncodingError as exc:
        return encode_error_reply(request_id, type(exc).__name__, str(exc))
