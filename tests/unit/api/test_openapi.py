"""The OpenAPI document, built without a server: every operation's errors are declared in
plughost.api.openapi.ERRORS (a new route must say what it can answer), each with the error
body, and the fast path's inference route is in it."""

from __future__ import annotations

from typing import Any

from plughost.api.app import create_app
from plughost.api.openapi import ERRORS


def test_every_operation_declares_its_error_statuses() -> None:
    asgi: Any = create_app()
    while not hasattr(asgi, "openapi"):  # the FastAPI app sits behind the hot-path wrappers
        asgi = asgi.app
    doc = asgi.openapi()
    operations = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert operations <= set(ERRORS), f"add to ERRORS: {sorted(operations - set(ERRORS))}"
    assert ("post", "/inference/{namespace_id}/{route}") in operations
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status in ERRORS[(method, path)]:
                body = op["responses"][str(status)]["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/Error"}, (method, path, status)
