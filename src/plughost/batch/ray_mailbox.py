"""Container calls of batch jobs on Ray: from the actors' sandboxed workers to the server.

A Ray Data actor (:mod:`plughost.batch.ray_steps`) reaches its worker over pipes, as a local
server does, and receives the worker's container calls there; but the actor runs on some
node of the cluster, not in the server, and has no connection to it. So the server makes one
:class:`ContainerMailbox` actor per job and hands its handle to the job's actors with their
config: an actor's ``await mailbox.call.remote(request)`` waits in the mailbox, the server
takes waiting requests with a long poll (:func:`serve_mailbox`), answers them with its
container service (the job's own organization) and posts each reply back. Everything
travels over Ray's own authenticated channels; the plugin's worker still has no network,
and the secrets and the LLM key stay on the server (only a reply, e.g. one secret's value,
crosses the cluster, as a call's result does).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("plughost.batch.ray")

TAKE_WAIT_S = 10.0  # the server's long poll
MAX_TAKE = 256


class ContainerMailbox:
    """A Ray actor (async): requests wait here until the server answers them."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)

    async def call(self, request: Any) -> Any:
        """An actor's request; returns the server's reply."""
        cid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = future
        self._queue.put_nowait((cid, request))
        try:
            return await future
        finally:
            self._waiting.pop(cid, None)

    async def take(self, wait_s: float = TAKE_WAIT_S) -> list[tuple[int, Any]]:
        """The waiting requests (the server's long poll): at least one, or none after
        ``wait_s``."""
        try:
            first = await asyncio.wait_for(self._queue.get(), wait_s)
        except TimeoutError:
            return []
        taken = [first]
        while len(taken) < MAX_TAKE and not self._queue.empty():
            taken.append(self._queue.get_nowait())
        return taken

    def reply(self, cid: int, reply: Any) -> None:
        future = self._waiting.get(cid)
        if future is not None and not future.done():
            future.set_result(reply)


Handler = Callable[[Any], Awaitable[dict[str, Any]]]


async def serve_mailbox(mailbox: Any, handler: Handler) -> None:
    """Answer the mailbox's requests with ``handler`` until cancelled (on the server)."""
    tasks: set[asyncio.Task[None]] = set()

    async def answer(cid: int, request: Any) -> None:
        reply = await handler(request)
        mailbox.reply.remote(cid, reply)

    try:
        while True:
            try:
                taken = await asyncio.wrap_future(mailbox.take.remote(TAKE_WAIT_S).future())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("the batch job's container mailbox stopped answering", exc_info=True)
                return
            for cid, request in taken:
                task = asyncio.create_task(answer(cid, request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()


def open_mailbox() -> Any:
    """A new mailbox actor (blocking Ray call; the server's)."""
    import ray

    actor = ray.remote(ContainerMailbox).options(num_cpus=0, max_concurrency=1000)
    return actor.remote()


def close_mailbox(mailbox: Any) -> None:
    import ray

    try:
        ray.kill(mailbox)
    except Exception:
        log.debug("mailbox already gone", exc_info=True)


async def ask(mailbox: Any, request: Any) -> dict[str, Any]:
    """An actor's container call through ``mailbox`` (on the actor's own loop)."""
    reply = await asyncio.wrap_future(mailbox.call.remote(request).future())
    return (
        reply
        if isinstance(reply, dict)
        else {
            "ok": False,
            "error": {
                "type": "ContainerUnavailable",
                "message": "malformed reply from the mailbox",
            },
        }
    )
