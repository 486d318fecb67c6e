"""Requests answered in process with every warning turned into an error: FastAPI deprecated
``ORJSONResponse`` (its FastAPIDeprecationWarning is a UserWarning, fired on each response
built with it), and no route, error handler or fast path may build a deprecated response."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from plughost.api.app import create_app
from plughost.api.responses import OrjsonResponse
from plughost.config import Settings

KEY = "ph-test-no-deprecation-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
NS = "/v1/namespaces/ns_default"


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    """The app's lifespan, driven over ASGI (httpx.ASGITransport sends no lifespan events)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task


def settings(home: Path) -> Settings:
    return Settings(home=home, bootstrap_key=KEY, warm_spare=False, port_keep_s=0)


# (method, path, headers, JSON body, expected status): routes with a return type, the error
# handlers (plughost's errors, FastAPI's validation errors, starlette's 404), a route that
# may stream, and the fast path's status poll
REQUESTS: list[tuple[str, str, dict[str, str], Any, int]] = [
    ("GET", "/healthz", {}, None, 200),
    ("GET", f"{NS}/plugins", AUTH, None, 200),
    ("POST", f"{NS}/plugins/uploads", AUTH, {"name": "quiet_one", "version": "1.0.0"}, 200),
    ("POST", f"{NS}/plugins/uploads", AUTH, {"name": "quiet_one"}, 422),
    ("GET", f"{NS}/plugins", {}, None, 401),
    ("GET", f"{NS}/plugins/nothing_here_1_0_0", AUTH, None, 404),
    ("GET", f"{NS}/plugins/nothing_here_1_0_0/status?watch=false", AUTH, None, 404),
    ("GET", f"{NS}/plugins/nothing_here_1_0_0/status", AUTH, None, 404),
    ("GET", f"{NS}/plugins/nothing_here_1_0_0/logs", AUTH, None, 404),
    ("GET", "/no/such/route", AUTH, None, 404),
]


async def answers(home: Path) -> list[tuple[int, str, Any]]:
    app = create_app(settings(home))
    out = []
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                for method, path, headers, body, _ in REQUESTS:
                    reply = await client.request(method, path, headers=headers, json=body)
                    out.append((reply.status_code, reply.headers["content-type"], reply.json()))
    return out


def test_no_request_emits_a_warning(tmp_path: Path) -> None:
    got = asyncio.run(answers(tmp_path / "home"))
    for (method, path, _, _, status), (code, content_type, body) in zip(REQUESTS, got):
        assert code == status, (method, path, body)
        assert content_type == "application/json", (method, path)
        if status >= 400:
            assert body["success"] is False and body["status"] == status, (method, path, body)


def test_orjson_response_writes_what_the_replicas_may_answer() -> None:
    np_free = {1: float("nan"), "text": "héllo", "nested": [1, 2.5, None]}
    body = OrjsonResponse(np_free).body
    assert orjson.loads(body) == {"1": None, "text": "héllo", "nested": [1, 2.5, None]}
    assert "héllo".encode() in body  # UTF-8, not \\u escapes
