"""The errors of a local replica's client (:mod:`.replica`), and how a reply becomes a
result or one of them. Each error is also the backend error it stands for
(:mod:`plughost.errors`), so the local backend passes it on as is."""

from __future__ import annotations

from typing import Any

from plughost.errors import (
    BackendError,
    CallFailed,
    CallTimedOut,
    RequestRefused,
    StartFailed,
    Unavailable,
)
from plughost.worker.protocol import WORKER_ORIGIN, FrameError, decode_object


class ReplicaError(BackendError):
    """Base of the errors raised by :class:`ReplicaProcess`. Each one is also the backend
    error it stands for (:mod:`plughost.errors`), so the local backend passes it on as is."""


class ReplicaStartError(ReplicaError, StartFailed):
    """The replica did not become ready; the message carries the plugin's own error text.

    ``output_tail`` holds the last lines the replica wrote to stderr.
    """

    def __init__(self, message: str, output_tail: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.output_tail = output_tail


class ReplicaCallError(ReplicaError, CallFailed):
    """The plugin (or the replica's request validation) rejected a call."""


class ReplicaRequestRefused(ReplicaError, RequestRefused):
    """The replica refused the request itself (see :class:`plughost.errors.RequestRefused`)."""

    def __init__(self, message: str) -> None:
        RequestRefused.__init__(self, message)


class ReplicaUnavailable(ReplicaError, Unavailable):
    """The replica cannot answer: it died, its connection dropped, or the call timed out."""


class ReplicaCallTimeout(ReplicaUnavailable, CallTimedOut):
    """A call got no reply in time (the replica was killed if the spec says so)."""


def _require_json_object(payload: bytes) -> None:
    """Raise ReplicaRequestRefused unless ``payload`` is exactly one JSON object."""
    try:
        decode_object(payload)
    except FrameError as exc:
        raise ReplicaRequestRefused(f"request body: {exc}") from exc


def _result_or_raise(body: bytes) -> Any:
    """The result of a decoded reply, or its error raised as ReplicaCallError."""
    try:
        reply = decode_object(body)
    except FrameError as exc:
        raise ReplicaUnavailable(f"unreadable reply: {exc}") from exc
    if reply.get("ok") is True:
        return reply.get("result")
    error = reply.get("error")
    if not isinstance(error, dict):
        error = {}
    if error.get("origin") == WORKER_ORIGIN:  # the worker refused the request, not the plugin
        raise ReplicaRequestRefused(str(error.get("message") or "request refused"))
    raise ReplicaCallError(str(error.get("type") or "Error"), str(error.get("message") or ""))
