"""plughost's exception tree.

Errors that reach a client carry a stable wire ``type`` and an HTTP status; :func:`wire_error`
maps them to the contract's error body in one place, for both the FastAPI handlers
(:mod:`plughost.api.errors`) and the ASGI fast path (:mod:`plughost.dataplane.fastpath`).
Backend errors stay inside the server: the data plane translates them to client errors once
(:meth:`plughost.dataplane.inference.Inference.infer_body`), and each backend's own errors
subclass them, so nothing in between translates again.

    PlughostError                  wire type (HTTP status)
    ├── ValidationError            ValidationError (422)
    ├── BadRequestError            BadRequestError (400)
    ├── AuthenticationError        AuthenticationError (401)
    ├── ForbiddenError             ForbiddenError (403)
    ├── NotFoundError              NotFoundError (404)
    ├── ConflictError              ConflictError (409)
    ├── PayloadTooLargeError       PayloadTooLargeError (413)
    ├── UnsupportedMediaTypeError  UnsupportedMediaTypeError (415)
    ├── ServiceUnavailableError    ServiceUnavailableError (503)
    │   └── StorageUnavailableError  the archive store (S3) cannot be used now
    ├── GatewayTimeoutError        GatewayTimeoutError (504): a call past its deadline
    └── PluginRuntimeError         PluginError (500)

    BackendError                   replicas, never on the wire as such
    ├── StartFailed                replicas could not be brought up   (ReplicaStartError)
    ├── RequestRefused             the replica refused the request itself, before any
    │                              plugin code ran: also a BadRequestError (400), so it
    │                              reaches the client as a request problem, never as the
    │                              plugin's                           (ReplicaRequestRefused)
    ├── CallFailed                 the plugin raised during a call    (ReplicaCallError)
    ├── DeadlineExceeded           the call passed its deadline and was cancelled in the
    │                              replica: also a GatewayTimeoutError (504)
    ├── CallCancelled              the call was cancelled (its caller went away)
    └── Unavailable                no replica could answer            (ReplicaUnavailable)
        └── CallTimedOut           no reply in time; replica killed   (ReplicaCallTimeout)

(In brackets: the local backend's subclasses, in :mod:`plughost.backends.local.replica`.)
"""

from __future__ import annotations

import logging
import math
from typing import Any

RETRY_AFTER_MAX_S = 5

log = logging.getLogger("plughost.api")


class PlughostError(Exception):
    """Base of all errors that reach a client."""

    status_code = 500
    error_type = "InternalServerError"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationError(PlughostError):
    status_code = 422
    error_type = "ValidationError"


class BadRequestError(PlughostError):
    status_code = 400
    error_type = "BadRequestError"


class AuthenticationError(PlughostError):
    status_code = 401
    error_type = "AuthenticationError"


class ForbiddenError(PlughostError):
    status_code = 403
    error_type = "ForbiddenError"


class NotFoundError(PlughostError):
    status_code = 404
    error_type = "NotFoundError"


class ConflictError(PlughostError):
    status_code = 409
    error_type = "ConflictError"


class PayloadTooLargeError(PlughostError):
    status_code = 413
    error_type = "PayloadTooLargeError"


class UnsupportedMediaTypeError(PlughostError):
    status_code = 415
    error_type = "UnsupportedMediaTypeError"


class ServiceUnavailableError(PlughostError):
    """503. With ``retry_after_s`` (how long the wait that ran out would still take) the
    answer carries a ``Retry-After`` header of that many seconds, 1 to
    :data:`RETRY_AFTER_MAX_S`: the one place both the restore hold and a wake from zero
    get it from."""

    status_code = 503
    error_type = "ServiceUnavailableError"

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, details)
        if retry_after_s is not None:
            seconds = max(1, min(RETRY_AFTER_MAX_S, math.ceil(retry_after_s)))
            self.headers = {"Retry-After": str(seconds)}


class StorageUnavailableError(ServiceUnavailableError):
    """The archive store cannot be used now (a missing bucket, refused credentials, an
    unreachable endpoint); the message names the bucket and the endpoint. Nothing the
    request stored is dropped: the client may retry."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details, retry_after_s=5)


class GatewayTimeoutError(PlughostError):
    """A call passed its deadline (serve_config.request_timeout_s, or the request's
    X-Request-Timeout); its work was cancelled."""

    status_code = 504
    error_type = "GatewayTimeoutError"


class PluginRuntimeError(PlughostError):
    """The plugin's own code raised while serving a request."""

    status_code = 500
    error_type = "PluginError"


class BackendError(Exception):
    """Base of the errors a replica backend raises."""


class StartFailed(BackendError):
    """Replicas could not be brought up; the message carries the plugin's own error text."""


class RequestRefused(BackendError, BadRequestError):
    """The replica refused a request (not one JSON object, inputs or parameters not objects):
    a 400 about the request; the plugin never saw it."""


class CallFailed(BackendError):
    """The plugin raised while serving a call; the replica keeps serving."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


class DeadlineExceeded(BackendError, GatewayTimeoutError):
    """The replica stopped a call at its deadline (cancelled in the replica)."""

    def __init__(self, message: str) -> None:
        GatewayTimeoutError.__init__(self, message)


class CallCancelled(BackendError):
    """The replica cancelled a call because its caller went away."""


class Unavailable(BackendError):
    """No replica could answer (none ready, died mid-call, or timed out).

    ``retry_after_s``: set when a replica is on its way (a start from zero still under way),
    so the client's 503 can say when to come back."""

    retry_after_s: float | None = None


class CallTimedOut(Unavailable):
    """A call got no reply within the call timeout (its replica may have been killed): the
    request is not retried on another replica."""


def error_body(status: int, message: str, error_type: str, details: Any = None) -> dict[str, Any]:
    """The contract's error body."""
    return {
        "success": False,
        "status": status,
        "error": {"message": message, "type": error_type, "details": details},
    }


def wire_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The HTTP status and error body for ``exc``: a PlughostError as it says, anything else
    a 500 naming only the exception's type (logged here with its traceback)."""
    if isinstance(exc, PlughostError):
        return exc.status_code, error_body(
            exc.status_code, exc.message, exc.error_type, exc.details
        )
    log.error("unhandled error", exc_info=exc)
    return 500, error_body(500, f"internal error: {type(exc).__name__}", "InternalServerError")
