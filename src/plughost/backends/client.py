"""The one client of the replica protocol: the hello, a call, a health ping, and how a reply
becomes a result or an error.

Three callers speak to a replica's worker (``python -I -m plughost.replica``): the local
backend's :class:`~plughost.backends.local.replica.ReplicaProcess`, the other ``--workers`` of a
home (:mod:`plughost.cluster.direct`) and the Ray backend's direct channels
(:mod:`plughost.backends.ray.direct`). Each owns its connection and its retry rules; what is
said on the connection, and what the answers mean, is defined here once.

Every function takes a ``send`` with the signature of
:meth:`~plughost.backends.channel.ReplicaChannel.request` (``body_for, timeout_s, is_call``
in, the reply's head and body out), so a caller may put its own bookkeeping around the
channel and still speak through here. Exceptions from ``send`` pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import orjson

from plughost.backends.errors import (
    ReplicaCallError,
    ReplicaRequestRefused,
    ReplicaUnavailable,
)
from plughost.backends.stream import CallStream, ChannelStream
from plughost.errors import CallCancelled, DeadlineExceeded
from plughost.replica.auth import HELLO_OP, new_nonce, proof_ok, server_token
from plughost.replica.protocol import (
    CANCELLED_ERROR,
    CONTAINER_OFFER_OP,
    END,
    ITEM,
    TIMEOUT_ERROR,
    WORKER_ORIGIN,
    FrameError,
    ReplyHead,
    decode_object,
    encode_raw_call_request,
    encode_request,
)
from plughost.replica.protocol import (
    RESULT as RESULT_KIND,
)

# told the size of each micro-batch a call of this context led (the data plane's metrics)
BATCH_SINK: ContextVar[Callable[[int], None] | None] = ContextVar("batch_sink", default=None)
DEADLINE_GRACE_S = 5.0  # past the replica's own deadline, the channel gives up on a reply
BodyFor = Callable[[int], bytes]
Send = Callable[[BodyFor, float, bool], Awaitable[tuple[ReplyHead, bytes]]]

__all__ = [
    "BodyFor",
    "Send",
    "call",
    "hello",
    "offer_container",
    "ping",
    "require_json_object",
    "result_json",
    "result_or_raise",
]


async def hello(send: Send, secret: str, timeout_s: float) -> bool:
    """Prove ``secret`` to the replica (plughost.replica.auth) and return whether the replica
    proved it back. A refused hello is ``False``, not an error."""
    nonce = new_nonce()
    message = {"op": HELLO_OP, "nonce": nonce, "token": server_token(secret, nonce)}
    head, body = await send(
        lambda request_id: orjson.dumps({"id": request_id, **message}), timeout_s, False
    )
    result = decode_object(body).get("result") if head.ok else None
    return isinstance(result, dict) and proof_ok(secret, nonce, result.get("proof"))


async def call(
    send: Send,
    payload: bytes,
    timeout_s: float,
    *,
    refusal_is_failure: bool = False,
    deadline_s: float | None = None,
) -> bytes | CallStream:
    """Run the plugin on a JSON body ``{"inputs": ..., "parameters": ...}``; the result's
    JSON bytes as the replica encoded them (see :func:`result_json`), or a CallStream when
    the handler streams.

    ``deadline_s``: the call's deadline in seconds from now, sent to the replica (which stops
    the call there and answers DeadlineExceeded); the channel then waits that long plus
    DEADLINE_GRACE_S instead of ``timeout_s``."""
    if deadline_s is not None:
        budget = deadline_s
        timeout_s = deadline_s + DEADLINE_GRACE_S
        head, body = await send(
            lambda request_id: encode_raw_call_request(request_id, payload, budget), timeout_s, True
        )
    else:
        head, body = await send(
            lambda request_id: encode_raw_call_request(request_id, payload), timeout_s, True
        )
    if head.batch:
        sink = BATCH_SINK.get()
        if sink is not None:
            sink(head.batch)
    return result_json(head, body, refusal_is_failure=refusal_is_failure)


async def offer_container(send: Send, timeout_s: float) -> bool:
    """Tell the replica this connection takes its container calls; whether it accepted (a
    replica that predates them refuses the op, which is not an error)."""
    head, body = await send(
        lambda request_id: encode_request(request_id, CONTAINER_OFFER_OP), timeout_s, False
    )
    return head.ok and decode_object(body).get("result") is True


async def ping(send: Send, timeout_s: float) -> bool:
    """Whether the replica answers a health ping with a healthy verdict."""
    head, body = await send(
        lambda request_id: encode_request(request_id, "health"), timeout_s, False
    )
    return head.ok and decode_object(body).get("result") is True


def require_json_object(payload: bytes) -> None:
    """Raise ReplicaRequestRefused unless ``payload`` is exactly one JSON object."""
    try:
        decode_object(payload)
    except FrameError as exc:
        raise ReplicaRequestRefused(f"request body: {exc}") from exc


def result_json(
    head: ReplyHead, body: bytes, *, refusal_is_failure: bool = False
) -> bytes | CallStream:
    """A call reply's result as JSON bytes: sliced out of the reply without decoding when
    the head locates it, else decoded (and its error raised, see :func:`result_or_raise`).
    A streamed reply (its first item, or its end when it yields nothing) is a CallStream."""
    if head.ok and head.kind == RESULT_KIND and head.result_start >= 0:
        return body[head.result_start : -1]
    if head.ok and head.kind in (ITEM, END):
        first = body[head.result_start : -1] if head.kind == ITEM and head.result_start >= 0 else (
            orjson.dumps(decode_object(body).get("item")) if head.kind == ITEM else None)

        def error_of(error_body: bytes) -> None:
            result_or_raise(error_body, refusal_is_failure=refusal_is_failure)

        return ChannelStream(first, head.stream if head.kind == ITEM else None, error_of)
    return orjson.dumps(result_or_raise(body, refusal_is_failure=refusal_is_failure))


def result_or_raise(body: bytes, *, refusal_is_failure: bool = False) -> Any:
    """The result of a reply, or its error raised.

    ReplicaUnavailable for an unreadable reply; ReplicaRequestRefused when the worker itself
    refused the request (its error's origin is the worker), ReplicaCallError when the plugin
    failed. ``refusal_is_failure``: report a refusal as ReplicaCallError too, which is what
    the Ray backend's direct calls have always answered.
    """
    try:
        reply = decode_object(body)
    except FrameError as exc:
        raise ReplicaUnavailable(f"unreadable reply: {exc}") from exc
    if reply.get("ok") is True:
        return reply.get("result")
    error = reply.get("error")
    if not isinstance(error, dict):
        error = {}
    if error.get("origin") == WORKER_ORIGIN:
        message = str(error.get("message") or "")
        if error.get("type") == TIMEOUT_ERROR:
            raise DeadlineExceeded(message)
        if error.get("type") == CANCELLED_ERROR:
            raise CallCancelled(message)
    if error.get("origin") == WORKER_ORIGIN and not refusal_is_failure:
        raise ReplicaRequestRefused(str(error.get("message") or "request refused"))
    raise ReplicaCallError(str(error.get("type") or "Error"), str(error.get("message") or ""))
