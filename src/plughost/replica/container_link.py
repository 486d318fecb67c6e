"""The replica's end of container calls: plugin code's requests out to the server.

Plugin code calls :meth:`ContainerLink.submit` from any thread (the plugin thread, an event
loop the plugin made, the replica's loop); the request goes out on a connection whose server
offered container calls (:data:`~plughost.replica.protocol.CONTAINER_OFFER_OP`), the reply
comes back on it and resolves the returned :class:`concurrent.futures.Future`. Every server
connection of one replica belongs to the same release, hence the same organization, so any
offering connection will do: the most recent one is used. Without one yet (a Ray replica
whose server has not connected its direct channel) a request waits up to
:data:`OFFER_WAIT_S`. A connection that closes fails the requests it carried.

The server answers every request within its own timeout, so no timer runs here per call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from concurrent.futures import Future, InvalidStateError
from typing import Any, Protocol

from plughost.domain.container import MODEL_LOADS, UNAVAILABLE, error_reply
from plughost.replica.protocol import FrameError, decode_container_frame, encode_container_frame

logger = logging.getLogger(__name__)

OFFER_WAIT_S = 30.0
# reports made before the replica serves (a model loaded by the service's constructor) that
# are kept until it does; more are dropped
MAX_EARLY_REPORTS = 256


class Outlet(Protocol):
    """A server connection as the link sees it: frames go out with ``send``."""

    def send(self, body: bytes) -> None: ...


def _settle(future: Future[Any], reply: dict[str, Any]) -> None:
    """Resolve ``future`` unless the plugin gave up on it (cancelled) meanwhile."""
    try:
        future.set_result(reply)
    except InvalidStateError:
        pass


class ContainerLink:
    """Pending container calls and the connections that take them; loop-side methods run on
    the replica's event loop, :meth:`submit` on any thread."""

    def __init__(self, offer_wait_s: float = OFFER_WAIT_S) -> None:
        self._offer_wait_s = offer_wait_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outlets: list[Outlet] = []
        self._pending: dict[int, tuple[Future[Any], Outlet]] = {}
        self._parked: list[tuple[dict[str, Any], Future[Any]]] = []
        self._ids = itertools.count(1)
        self._early: list[tuple[dict[str, Any], Future[Any]]] = []
        # set by the first call: the invoker then keeps plain calls off the loop, where a
        # plugin blocking on a container reply would stop the loop that must deliver it
        self.used = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the replica serves on; calls before it exists are refused, reports
        (:data:`MODEL_LOADS`) made before it go out once a server offers container calls."""
        self._loop = loop
        early, self._early = self._early, []
        for request, future in early:
            loop.call_soon_threadsafe(self._send, request, future)

    # -- any thread -----------------------------------------------------------------------
    def submit(self, request: dict[str, Any]) -> Future[Any]:
        """Send ``request``; the future gets the server's reply (an error reply when there is
        no server to ask). Never raises."""
        future: Future[Any] = Future()
        report = request.get("target") == MODEL_LOADS  # nobody waits for its reply
        self.used = self.used or not report
        loop = self._loop
        if loop is None and report and len(self._early) < MAX_EARLY_REPORTS:
            self._early.append((request, future))
            return future
        if loop is None or loop.is_closed():
            _settle(
                future,
                error_reply(
                    UNAVAILABLE,
                    "container calls work while the replica serves requests (in a handler or "
                    "health check), not while its service is constructed",
                ),
            )
            return future
        try:
            loop.call_soon_threadsafe(self._send, request, future)
        except RuntimeError:  # the loop closed meanwhile
            _settle(future, error_reply(UNAVAILABLE, "the replica is stopping"))
        return future

    # -- the loop -------------------------------------------------------------------------
    def _send(self, request: dict[str, Any], future: Future[Any]) -> None:
        if future.done():
            return
        if not self._outlets:
            self._park(request, future)
            return
        outlet = self._outlets[-1]
        cid = next(self._ids)
        try:
            body = encode_container_frame(cid, "request", request)
            outlet.send(body)
        except (FrameError, TypeError, ValueError) as exc:
            _settle(future, error_reply(UNAVAILABLE, f"the request cannot be sent: {exc}"))
            return
        self._pending[cid] = (future, outlet)
        future.add_done_callback(lambda _f, cid=cid: self._forget(cid))

    def _forget(self, cid: int) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._pending.pop, cid, None)

    def _park(self, request: dict[str, Any], future: Future[Any]) -> None:
        """Hold a request until a server offers container calls, for a bounded time."""
        entry = (request, future)
        self._parked.append(entry)
        assert self._loop is not None
        self._loop.call_later(self._offer_wait_s, self._give_up, entry)

    def _give_up(self, entry: tuple[dict[str, Any], Future[Any]]) -> None:
        if entry in self._parked:
            self._parked.remove(entry)
            _settle(
                entry[1],
                error_reply(
                    UNAVAILABLE,
                    f"no server connection offered container calls within {self._offer_wait_s:g} s",
                ),
            )

    def offered(self, outlet: Outlet) -> None:
        """``outlet``'s server takes container calls: use it, and send what waited."""
        if outlet not in self._outlets:
            self._outlets.append(outlet)
        parked, self._parked = self._parked, []
        for request, future in parked:
            self._send(request, future)

    def deliver(self, outlet: Outlet, body: bytes) -> None:
        """A reply frame arrived on ``outlet``."""
        try:
            cid, reply = decode_container_frame(body, "reply")
        except FrameError as exc:
            logger.warning("dropping a malformed container reply: %s", exc)
            return
        entry = self._pending.pop(cid, None)
        if entry is not None and entry[1] is outlet:
            _settle(
                entry[0],
                reply
                if isinstance(reply, dict)
                else error_reply(UNAVAILABLE, "the server sent a malformed container reply"),
            )

    def closed(self, outlet: Outlet) -> None:
        """``outlet`` is gone: stop using it and fail the calls still waiting on it."""
        if outlet in self._outlets:
            self._outlets.remove(outlet)
        for cid, (future, used) in list(self._pending.items()):
            if used is outlet:
                del self._pending[cid]
                _settle(
                    future,
                    error_reply(
                        UNAVAILABLE, "the server connection closed before the container call ended"
                    ),
                )
