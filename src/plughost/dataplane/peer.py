"""``POST /_peer/call/{release_id}``: a call another server forwards to the leader, which runs
the replicas (plughost.cluster.forward is the sending side).

Not part of the public API (not in /openapi.json): only servers sharing the database can
sign it (the database's URL-signing secret over the release id, a time stamp and the
body). It answers 200 with the replica's bytes, or a JSON ``{"kind", "message"}``:
``not_here`` (this server does not lead, or its group of the release is not up yet: the
sender waits and asks again), ``refused`` (400), ``call_failed`` (the plugin raised),
``deadline`` (504: past the call's deadline, which the sender passes in
``x-plughost-deadline``, seconds) or ``unavailable``. A streamed answer is 200 with the
:data:`PEER_STREAM` type, one JSON object per line: ``{"item": ...}`` per item, then
``{"end": true}`` or an error object as above. A sender that hangs up cancels the call.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from plughost.backends.stream import CallStream
from plughost.cluster.forward import (
    DEADLINE_HEADER,
    PEER_PREFIX,
    PEER_STREAM,
    SIGNATURE_HEADER,
    TIME_HEADER,
    peer_signature_ok,
)
from plughost.dataplane.body import ClientDisconnected, read_capped
from plughost.dataplane.streaming import ClientGone, unless_gone
from plughost.errors import (
    BackendError,
    CallFailed,
    DeadlineExceeded,
    PayloadTooLargeError,
    RequestRefused,
)

GROUP_WAIT_S = 2.0  # a leader starting its replicas: answer not_here after this


class PeerPath:
    """Answers forwarded calls itself; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PEER_PREFIX) or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            status, body = await self._answer(scope, receive, path[len(PEER_PREFIX) :])
        except ClientGone:
            return
        if isinstance(body, CallStream):
            await _send_peer_stream(send, receive, body)
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(
        self, scope: Scope, receive: Receive, tail: str
    ) -> tuple[int, bytes | CallStream]:
        runtime = getattr(self.state, "runtime", None)  # set by the lifespan
        cluster = runtime.cluster if runtime is not None else None
        if not self.state.ready or cluster is None or not tail.isdigit():
            return _kind(404, "not_here", "no such peer route")
        try:
            body = await read_capped(receive)
        except PayloadTooLargeError:
            return _kind(413, "refused", "body too large")
        except ClientDisconnected:
            body = b""  # the sender left: whatever follows is answered to nobody
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        release_id = int(tail)
        if not peer_signature_ok(
            cluster.secret,
            release_id,
            headers.get(TIME_HEADER, ""),
            body,
            headers.get(SIGNATURE_HEADER, ""),
        ):
            return _kind(403, "refused", "bad peer signature")
        group = await _group(runtime, cluster, release_id)
        if group is None:
            return _kind(409, "not_here", f"release {release_id} is not served here")
        limit = group.request_timeout(runtime.settings.replica_call_timeout_s)
        wanted = _seconds(headers.get(DEADLINE_HEADER))
        if wanted is not None:
            limit = wanted if limit is None else min(limit, wanted)
        try:
            return 200, await unless_gone(receive, _call(group, body, limit))
        except BackendError as exc:
            status, answer = error_answer(exc)
            return status, answer


async def _call(group: Any, body: bytes, limit: float | None) -> bytes | CallStream:
    if limit is None:
        return await group.call_body(body)
    try:
        async with asyncio.timeout(limit):
            return await group.call_body(body, limit)
    except TimeoutError:
        raise DeadlineExceeded(f"no answer within the call's deadline of {limit:g} s") from None


def error_answer(exc: BackendError) -> tuple[int, bytes]:
    """The status and JSON of a backend error, as the sender reads them back."""
    if isinstance(exc, RequestRefused):
        return _kind(400, "refused", str(exc))
    if isinstance(exc, CallFailed):
        return 502, orjson.dumps(
            {"kind": "call_failed", "type_name": exc.type_name, "message": exc.message}
        )
    if isinstance(exc, DeadlineExceeded):
        return _kind(504, "deadline", exc.message)
    return _kind(503, "unavailable", str(exc))


async def _send_peer_stream(send: Send, receive: Receive, stream: CallStream) -> None:
    """A streamed answer, one JSON object per line, each sent as it comes."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", PEER_STREAM.encode())]})

    async def lines() -> None:
        try:
            async for item in stream:
                await send({"type": "http.response.body", "body": b'{"item":' + item + b"}\n",
                            "more_body": True})
            tail = b'{"end":true}\n'
        except BackendError as exc:
            tail = error_answer(exc)[1] + b"\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    try:
        await unless_gone(receive, lines())
    except ClientGone:
        pass
    finally:
        await stream.aclose()


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds > 0 else None


async def _group(runtime: Any, cluster: Any, release_id: int) -> Any:
    deadline = time.monotonic() + GROUP_WAIT_S
    while cluster.leading():
        group = runtime.controller.groups.get(release_id)
        if group is not None or time.monotonic() >= deadline:
            return group
        await asyncio.sleep(0.05)
    return None


def _kind(status: int, kind: str, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"kind": kind, "message": message})
