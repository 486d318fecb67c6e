"""The floor: a bare ASGI app (uvicorn + httptools, orjson) calling the plugin in process.

No framework, no routing table, no auth, no process hop: the plugin's handler is called on
the event loop and its result encoded with orjson. No serving layer can beat this, so the
other systems are quoted as ratios of it.

Run: ``python -m bench.floor_app --plugin-dir DIR --port PORT``, or ``--fd N`` to serve on an
inherited listening socket (how bench/systems.py starts it: the port is bound before the
plugin loads, so no other process can take it meanwhile). Any POST path calls the plugin with
the body's ``inputs`` and ``parameters``; GET answers 200 (health).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import socket
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]


def make_app(
    plugin_dir: Path, call_in_thread: bool = False
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """Load the plugin with plughost's own loader and wrap its handler in a raw ASGI app.

    ``call_in_thread``: run a plain handler in one dedicated thread (as plughost's replica
    does) instead of on the event loop; for compute-heavy plugins, where blocking the loop
    would stall reading the next requests.
    """
    from plughost.replica.loader import load_plugin

    handler = load_plugin(plugin_dir).handler
    is_async = inspect.iscoroutinefunction(handler)
    executor = ThreadPoolExecutor(max_workers=1) if call_in_thread and not is_async else None

    async def respond(send: Send, status: int, body: bytes) -> None:
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await respond(send, 200, b'{"status":"ok"}')
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            request = orjson.loads(body) if body else {}
            inputs, parameters = request.get("inputs") or {}, request.get("parameters") or {}
            if executor is not None:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(executor, handler, inputs, parameters)
            else:
                result = handler(inputs, parameters)
            if is_async or inspect.isawaitable(result):
                result = await result
            await respond(send, 200, orjson.dumps(result))
        except Exception as exc:  # noqa: BLE001 - any plugin error is a 500, as on a server
            await respond(send, 500, orjson.dumps({"error": f"{type(exc).__name__}: {exc}"}))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plugin-dir", required=True, type=Path)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="bind this port on --host")
    where.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--call-in-thread", action="store_true")
    args = parser.parse_args()

    import uvicorn

    # Adopted before the plugin loads, so the descriptor cannot be mistaken for another.
    sockets = [socket.socket(fileno=args.fd)] if args.fd is not None else None
    config = uvicorn.Config(
        make_app(args.plugin_dir.resolve(), call_in_thread=args.call_in_thread),
        host=args.host,
        port=args.port or 0,
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(3)  # uvicorn.run's exit code for a failed start-up


if __name__ == "__main__":
    main()
