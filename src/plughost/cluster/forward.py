"""Followers' replica groups: a call forwarded to the server that runs the controller.

With the local backend, replicas are processes the leader started; a follower reaches them
through the leader (``POST {leader}/_peer/call/{release_id}``, answered by
:mod:`plughost.dataplane.peer`), signed with the database's shared URL-signing secret. While
the leader changes (it died; a follower takes over and starts the replicas again) a call
waits, up to ``hold_s``, for a reachable leader or, once this server leads, for its own
group of the release. A call whose request reached a leader that then died is sent again
to the next one (inference calls are meant to be idempotent); a timeout is not.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from plughost.backends.base import (
    GroupHealth,
    GroupSnapshot,
    GroupSpec,
    ReplicaGroup,
    plain_snapshot,
)
from plughost.backends.stream import CallStream
from plughost.errors import (
    CallFailed,
    CallTimedOut,
    DeadlineExceeded,
    NotFoundError,
    RequestRefused,
    Unavailable,
)

if TYPE_CHECKING:  # httpx (and the rich it imports) only once a call is forwarded
    import httpx

PEER_PREFIX = "/_peer/call/"
TIME_HEADER = "x-plughost-peer-time"
SIGNATURE_HEADER = "x-plughost-peer-signature"
DEADLINE_HEADER = "x-plughost-deadline"  # seconds left of the call's deadline
PEER_STREAM = "application/x-plughost-peer-stream"  # a streamed answer (plughost.dataplane.peer)
MAX_SKEW_S = 300
LEADER_CHECK_S = 0.2  # how often a forwarded call that waits checks the leader is still it


def peer_signature(secret: bytes, release_id: int, stamp: str, body: bytes) -> str:
    mac = hmac.new(secret, f"{release_id}.{stamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return mac.hexdigest()


def peer_signature_ok(secret: bytes, release_id: int, stamp: str, body: bytes, sig: str) -> bool:
    try:
        fresh = abs(time.time() - float(stamp)) < MAX_SKEW_S
    except ValueError:
        return False
    return fresh and hmac.compare_digest(peer_signature(secret, release_id, stamp, body), sig)


class NotHere(Exception):
    """The peer asked is not the leader, or has no group of the release yet."""


@dataclass
class PeerCalls:
    """Sends calls to the leader, or to this server's own group once it leads."""

    secret: bytes
    leader_address: Callable[[], str | None]
    local_group: Callable[[int], ReplicaGroup | None]  # ours while we lead, else None
    leading: Callable[[], bool]
    # whether this server still routes calls to the release (it was undeployed meanwhile:
    # the call is a 404 instead of a wait)
    wanted: Callable[[int], bool] = lambda _release_id: True
    hold_s: float = 30.0
    call_timeout_s: float = 60.0
    # a worker of `plughost serve --workers N` calls this home's replicas itself (None: none
    # connected yet, forward) instead of adding an HTTP hop to the leader (plughost.cluster.direct)
    direct: Callable[[int, bytes, float | None], Awaitable[bytes | CallStream | None]] | None = None
    # calls this server sent to the leader, and those it answered itself over ``direct``
    # (shown in /healthz: they tell whether a follower's direct path works)
    forwarded: int = 0
    direct_calls: int = 0
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    async def call(
        self, release_id: int, body: bytes, deadline_s: float | None = None
    ) -> bytes | CallStream:
        deadline = time.monotonic() + self.hold_s
        started = time.monotonic()
        while True:
            left = None if deadline_s is None else deadline_s - (time.monotonic() - started)
            if left is not None and left <= 0:
                raise DeadlineExceeded(f"no server took the call within its deadline of {deadline_s:g} s")
            try:
                return await self._once(release_id, body, left)
            except NotHere as exc:
                if not self.wanted(release_id):
                    raise NotFoundError(
                        f"release {release_id} is no longer deployed", {"release_id": release_id}
                    ) from exc
                if time.monotonic() >= deadline:
                    raise Unavailable(f"no server runs release {release_id} yet: {exc}") from exc
            await asyncio.sleep(0.05)

    async def _once(
        self, release_id: int, body: bytes, deadline_s: float | None = None
    ) -> bytes | CallStream:
        if self.leading():
            group = self.local_group(release_id)
            if group is None:
                raise NotHere("this server leads and is starting its replicas")
            if deadline_s is None:
                return await group.call_body(body)
            return await group.call_body(body, deadline_s)
        if self.direct is not None:
            reply = await self.direct(release_id, body, deadline_s)
            if reply is not None:
                self.direct_calls += 1
                return reply
        address = self.leader_address()
        if address is None:
            raise NotHere("no leader")
        return await self._post(address, release_id, body, deadline_s)

    async def _post(
        self, address: str, release_id: int, body: bytes, deadline_s: float | None = None
    ) -> bytes | CallStream:
        stamp = f"{time.time():.3f}"
        headers = {
            TIME_HEADER: stamp,
            SIGNATURE_HEADER: peer_signature(self.secret, release_id, stamp, body),
            "content-type": "application/json",
        }
        if deadline_s is not None:
            headers[DEADLINE_HEADER] = f"{deadline_s:.3f}"
        import httpx

        url = f"{address.rstrip('/')}{PEER_PREFIX}{release_id}"
        self.forwarded += 1
        http = self.client()
        request = asyncio.ensure_future(
            http.send(http.build_request("POST", url, content=body, headers=headers), stream=True)
        )
        try:
            # A dead leader's port can still take connections (its port keeper holds the
            # socket for its successor: plughost.server.port_keeper), so the call would wait there for its
            # whole timeout. It goes on to the next leader as soon as the lease names another
            # one, or none, or us.
            while not (await asyncio.wait({request}, timeout=LEADER_CHECK_S))[0]:
                if self.leading() or self.leader_address() != address:
                    raise NotHere(f"leader {address} was replaced while the call waited")
            reply = request.result()
            if reply.status_code == 200 and reply.headers.get("content-type") == PEER_STREAM:
                return _PeerStream(reply)
            await reply.aread()
            await reply.aclose()
        except httpx.TimeoutException as exc:
            raise CallTimedOut(f"the leader did not answer in time: {exc}") from exc
        except httpx.TransportError as exc:  # the leader is gone: wait for the next one
            raise NotHere(f"leader {address} unreachable: {exc!r}") from exc
        except BaseException:
            if request.done() and not request.cancelled() and request.exception() is None:
                await request.result().aclose()
            raise
        finally:
            request.cancel()  # a no-op once it is done
        if reply.status_code == 200:
            return reply.content
        raise _peer_error(reply)

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.call_timeout_s, connect=2.0), limits=limits
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _peer_error(reply: httpx.Response) -> Exception:
    try:
        info = orjson.loads(reply.content)
    except orjson.JSONDecodeError:
        info = {}
    return _error_of(info, reply.status_code, reply.text[:500])


def _error_of(info: Any, status: int, text: str = "") -> Exception:
    if not isinstance(info, dict):
        info = {}
    kind, message = info.get("kind"), str(info.get("message", text))
    if kind == "not_here":
        return NotHere(message)
    if kind == "refused":
        return RequestRefused(message)
    if kind == "call_failed":
        return CallFailed(str(info.get("type_name", "Exception")), message)
    if kind == "deadline":
        return DeadlineExceeded(message)
    return Unavailable(f"the leader answered {status}: {message}")


class _PeerStream(CallStream):
    """A streamed answer read line by line from the leader's response."""

    def __init__(self, reply: httpx.Response) -> None:
        self._reply = reply
        self._lines = reply.aiter_lines()
        self._done = False

    async def next_item(self) -> bytes | None:
        import httpx

        if self._done:
            return None
        try:
            line = await anext(self._lines)
        except StopAsyncIteration:
            line = ""
        except httpx.HTTPError as exc:
            self._done = True
            await self._reply.aclose()
            raise Unavailable(f"the leader's stream broke: {exc!r}") from exc
        if not line:
            self._done = True
            await self._reply.aclose()
            raise Unavailable("the leader's stream ended without its end")
        if line.startswith('{"item":'):
            return line[8:-1].encode()
        self._done = True
        await self._reply.aclose()
        info = orjson.loads(line)
        if info.get("end") is True:
            return None
        raise _error_of(info, 200)

    async def aclose(self) -> None:
        self._done = True
        await self._reply.aclose()


class ForwardGroup(ReplicaGroup):
    """A follower's stand-in for the leader's replica group of one release."""

    def __init__(
        self,
        spec: GroupSpec,
        peers: PeerCalls,
        successor: Callable[[GroupSpec], Any] | None = None,
    ) -> None:
        self.spec = spec
        self.peers = peers
        # the route that serves this deployment name now (a redeploy replaced the release)
        self.successor = successor

    async def call_body(self, body: bytes, deadline_s: float | None = None) -> bytes | CallStream:
        """A call that took this route just before a redeploy replaced its release (the
        old replicas drained meanwhile) goes on to the release that replaced it, instead
        of a 404 for the release gone."""
        try:
            return await self.peers.call(self.spec.release_id, body, deadline_s)
        except NotFoundError:
            route = self.successor(self.spec) if self.successor is not None else None
            if route is None or route.release_id == self.spec.release_id:
                raise
            return await route.group.call_body(body, deadline_s)

    def request_timeout(self, default: float) -> float | None:
        """The leader applies the release's deadline (this server does not know it)."""
        return None

    async def health(self) -> bool:
        return True

    def observe(self) -> GroupHealth:
        return GroupHealth(desired=self.spec.num_replicas, ready=self.spec.num_replicas)

    def snapshot(self) -> GroupSnapshot:
        """The leader's replicas are its to report; a follower assumes them ready."""
        return plain_snapshot(self.observe())

    async def stop(self, drain_timeout_s: float) -> None:
        return None


def forward_spec(deployment_name: str, release_id: int, namespace_id: str) -> GroupSpec:
    return GroupSpec(
        deployment_name=deployment_name,
        release_id=release_id,
        plugin_dir=Path("."),
        namespace_id=namespace_id,
    )
