"""How the API's JSON answers are encoded, side by side in one run: FastAPI's deprecated
``ORJSONResponse`` as the default response class (what plughost used), FastAPI's own default
(pydantic writes the bytes of a route's return value), and our ``OrjsonResponse`` as the
default class. Each is a route returning a view as plughost's routes do (``-> dict[str, Any]``),
called over ASGI in process, so only routing and encoding are measured.

    .venv/bin/python -m bench.json_responses [--calls 3000] [--plugins 20]

Prints microseconds per call (best of five rounds) and the ratio to the deprecated setup.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import warnings
from typing import Any

from fastapi import FastAPI

from plughost.api.responses import OrjsonResponse

with warnings.catch_warnings():  # the deprecated class is the baseline being measured
    warnings.simplefilter("ignore")
    from fastapi.responses import ORJSONResponse


def plugin_view(i: int) -> dict[str, Any]:
    """A plugin as the list route shows it: flat fields, a nested manifest, a few numbers."""
    return {
        "plugin_id": f"plugin_{i}_1_0_0",
        "name": f"plugin_{i}",
        "version": "1.0.0",
        "description": "an embedding plugin with a fairly ordinary description " * 2,
        "namespace_id": "ns_default",
        "validation_status": "passed",
        "deployment_status": "deployed",
        "created_at": "2026-11-30T12:00:00.123456+00:00",
        "file_size_bytes": 18_342 + i,
        "s3_archive_url": f"s3://plughost/archives/plugins/plugin_{i}_1_0_0.zip",
        "manifest": {
            "feature_extractor_name": f"plugin_{i}",
            "features": [{"name": "embedding", "type": "vector", "dims": 384}],
            "output_schema": {"embedding": {"type": "array", "items": {"type": "number"}}},
            "serve_config": {"num_replicas": 2, "max_ongoing_requests": 64},
        },
        "metrics": {"calls": 1_000 * i, "p50_ms": 1.25, "p99_ms": 7.5, "errors": 0},
    }


def build(default: type | None, body: dict[str, Any]) -> FastAPI:
    app = FastAPI() if default is None else FastAPI(default_response_class=default)

    @app.get("/view")
    def view() -> dict[str, Any]:
        return body

    return app


async def call(app: FastAPI) -> bytes:
    sent: list[bytes] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/view", "raw_path": b"/view", "root_path": "",
        "query_string": b"", "headers": [(b"host", b"bench")], "server": ("bench", 80),
        "client": ("bench", 1), "state": {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(sent)


async def per_call_us(app: FastAPI, calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            await call(app)
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


async def run(calls: int, plugins: int) -> None:
    bodies = {
        "small (healthz-like)": {"status": "ok", "version": "0.1.0", "database": "sqlite"},
        f"list of {plugins} plugins": {"results": [plugin_view(i) for i in range(plugins)]},
    }
    setups: dict[str, type | None] = {
        "ORJSONResponse default (deprecated)": ORJSONResponse,
        "FastAPI default, pydantic bytes": None,
        "OrjsonResponse default (ours)": OrjsonResponse,
    }
    for label, body in bodies.items():
        print(f"\n{label}: us per call, best of 5 x {calls}")
        answers = {name: await call(build(cls, body)) for name, cls in setups.items()}
        base, first = None, next(iter(answers.values()))
        for name, cls in setups.items():
            us = await per_call_us(build(cls, body), calls)
            base = base or us
            same = "same bytes" if answers[name] == first else "DIFFERENT bytes"
            print(f"  {name:<38} {us:8.1f}  x{us / base:.2f}  {len(answers[name])} B, {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--plugins", type=int, default=20)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the baseline warns on every call
        asyncio.run(run(args.calls, args.plugins))


if __name__ == "__main__":
    main()
