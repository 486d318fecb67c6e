"""The JSON responses the API builds by hand.

Routes that return a value leave its encoding to FastAPI: with the default response class
and a return type, FastAPI validates the value and has pydantic write the JSON bytes in one
step (what it recommends since it deprecated ``ORJSONResponse``; bench/json_responses.py
compares the two). What is not a route's return value, the error bodies of the exception
handlers and the answers of routes that may also stream, goes through :class:`OrjsonResponse`.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

# Keys that are not strings (ints in a plugin's metadata) become strings, and numpy values in
# a plugin's answer become JSON numbers and arrays, as they do on the replica protocol.
ENCODE_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class OrjsonResponse(JSONResponse):
    """``application/json`` written by orjson: the fastest encoder we measured, and it writes
    NaN and infinities as ``null`` where the standard library's encoder refuses them."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=ENCODE_OPTIONS)
