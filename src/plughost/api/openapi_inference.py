"""What the OpenAPI document says of an inference call's answer, shared by the fast path's
documentation route (``POST /inference/{namespace_id}/{route}``) and ``POST /v1/inference``:
the JSON result, the two streamed forms of a plugin that yields, and the deadline header."""

from __future__ import annotations

from typing import Any

TIMEOUT_HEADER_TEXT = (
    "Seconds this call may take. It may only lower the release's deadline "
    "(serve_config.request_timeout_s, default 60); past it the answer is 504 "
    "GatewayTimeoutError and the call is cancelled in the replica."
)

_STREAM_TEXT = (
    "What the plugin returned, as JSON. A handler that returns a generator (or an async "
    "generator) streams instead: `application/x-ndjson` by default, one JSON value per line as "
    "it is yielded; `text/event-stream` when the request sends `Accept: text/event-stream`, one "
    "`data:` event per item, then `event: end`. An exception mid-stream ends the stream with "
    "an error line (an `event: error`) holding the error body."
)

INFERENCE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": _STREAM_TEXT,
        "content": {
            "application/json": {"schema": {}},
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one JSON value per line"},
            },
            "text/event-stream": {
                "schema": {"type": "string",
                           "description": "`data: <JSON>` events, then `event: end`"},
            },
        },
    },
}

# declared by hand: FastAPI would write an optional header as "number or null", and a null
# is no header at all on the wire
TIMEOUT_PARAMETER: dict[str, Any] = {
    "name": "X-Request-Timeout",
    "in": "header",
    "required": False,
    "description": TIMEOUT_HEADER_TEXT,
    "schema": {"type": "number", "exclusiveMinimum": 0},
}
INFERENCE_EXTRA: dict[str, Any] = {"parameters": [TIMEOUT_PARAMETER]}
