"""FastAPI's exception handlers: each answers with the contract's error body, through
:func:`plughost.errors.wire_error` as the ASGI fast path does."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from plughost.api.responses import OrjsonResponse
from plughost.errors import PlughostError, error_body, wire_error

_HTTP_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "ForbiddenError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    409: "ConflictError",
    413: "PayloadTooLargeError",
    415: "UnsupportedMediaTypeError",
    422: "ValidationError",
}


def error_response(
    status: int, message: str, error_type: str, details: Any = None
) -> OrjsonResponse:
    return OrjsonResponse(error_body(status, message, error_type, details), status_code=status)


def _respond(exc: BaseException) -> OrjsonResponse:
    status, body = wire_error(exc)
    return OrjsonResponse(body, status_code=status, headers=getattr(exc, "headers", None))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PlughostError)
    async def _plughost(_: Request, exc: PlughostError) -> OrjsonResponse:
        return _respond(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> OrjsonResponse:
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        summary = (
            "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
        )
        return error_response(
            422,
            f"request validation failed: {summary}",
            "ValidationError",
            {"errors": _jsonable(errors)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        message = str(exc.detail) if exc.detail else "error"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # every method of the path, not just those of the first route that matched it
            allowed = request.app.state.methods.allowed(request.url.path)
            headers["Allow"] = ", ".join(allowed) or headers.get("Allow", "")
            message = f"method {request.method} is not allowed here; allowed: {headers['Allow']}"
        elif exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        response = error_response(
            exc.status_code, message, _HTTP_TYPES.get(exc.status_code, "HTTPError")
        )
        response.headers.update(headers)
        return response

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, exc: ClientDisconnect) -> OrjsonResponse:
        # the client left mid-request: nothing to log, nobody to answer
        return error_response(400, "client disconnected", "BadRequestError")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> OrjsonResponse:
        return _respond(exc)
