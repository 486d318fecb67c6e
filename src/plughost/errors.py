"""plughost's exception tree: each error has a stable wire `type` and an HTTP status.

The API maps these to the contract's error body in exactly one handler.
"""

from __future__ import annotations

from typing import Any


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


class QuotaExceededError(PlughostError):
    status_code = 429
    error_type = "QuotaExceededError"


class ServiceUnavailableError(PlughostError):
    status_code = 503
    error_type = "ServiceUnavailableError"


class PluginRuntimeError(PlughostError):
    """The plugin's own code raised while serving a request."""

    status_code = 500
    error_type = "PluginError"
