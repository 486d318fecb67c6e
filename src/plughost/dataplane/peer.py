"""``POST /_peer/call/{release_id}``: a call another server forwards to the leader, which runs
the replicas (plughost.cluster.forward is the sending side).

Not part of the public API (not in /openapi.json): only servers sharing the database can
sign it (the database's URL-signing secret over the release id, a time stamp and the
body). It answers 200 with the replica's bytes, or a JSON ``{"kind", "message"}``:
``not_here`` (this server does not lead, or its group of the release is not up yet: the
sender waits and asks again), ``refused`` (400), ``call_failed`` (the plugin raised) or
``unavailable``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from plughost.cluster.forward import (
    PEER_PREFIX,
    SIGNATURE_HEADER,
    TIME_HEADER,
    peer_signature_ok,
)
from plughost.dataplane.body import ClientDisconnected, read_capped
from plughost.errors import CallFailed, PayloadTooLargeError, RequestRefused, Unavailable

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
        status, body = await self._answer(scope, receive, path[len(PEER_PREFIX) :])
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, receive: Receive, tail: str) -> tuple[int, bytes]:
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
        try:
            return 200, bytes(await group.call_body(body))
        except RequestRefused as exc:
            return _kind(400, "refused", str(exc))
        except CallFailed as exc:
            return 502, orjson.dumps(
                {"kind": "call_failed", "type_name": exc.type_name, "message": exc.message}
            )
        except Unavailable as exc:
            return _kind(503, "unavailable", str(exc))


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
