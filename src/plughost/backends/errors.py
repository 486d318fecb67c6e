"""The errors of the replica client (:mod:`.client`, :mod:`.replica`). Each error is also
the backend error it stands for (:mod:`plughost.errors`), so a backend passes it on as is."""

from __future__ import annotations

from plughost.errors import (
    BackendError,
    CallFailed,
    CallTimedOut,
    RequestRefused,
    StartFailed,
    Unavailable,
)


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
