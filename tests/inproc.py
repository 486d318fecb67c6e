"""The app in this process: `create_app(...)` behind `httpx.ASGITransport`, with its lifespan.

`InProcessServer` offers what the HTTP-surface tests use of `LiveServer` (`client()`, `auth`,
`key`, `url`), so one test body runs against either. The app lives on an event loop in a thread of
its own; the synchronous clients the tests hold hand each request to that loop. No socket, no
`plughost serve` process: the fast tier (`make test-fast`) runs these."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


class _Lifespan:
    """Drives an ASGI app's lifespan protocol: startup on enter, shutdown on exit."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        await self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, self.inbox.get, self.outbox.put)

    async def _expect(self, event: str) -> None:
        message = await self.outbox.get()
        if message["type"] != f"lifespan.{event}.complete":
            raise RuntimeError(f"lifespan {event} failed: {message}")

    async def startup(self) -> None:
        self.task = asyncio.create_task(self._run())
        await self.inbox.put({"type": "lifespan.startup"})
        await self._expect("startup")

    async def shutdown(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self._expect("shutdown")
        if self.task is not None:
            await self.task


async def _cancel_the_rest() -> None:
    """Cancel what the app left on its loop after shutdown, as ``asyncio.run`` does at its end."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _LoopBridge(httpx.BaseTransport):
    """A synchronous transport that runs each request on the app's loop, body read in full."""

    def __init__(self, server: InProcessServer) -> None:
        self.server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.server.transport
        content = request.read()  # in this thread: a generator body is a synchronous stream

        async def send() -> httpx.Response:
            inner = httpx.Request(request.method, request.url, headers=request.headers, content=content)
            response = await transport.handle_async_request(inner)
            body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return self.server.call(send())


@dataclass
class InProcessServer:
    """The whole app (database, services, controller) in this process, on its own loop thread."""

    home: Path
    database_url: str = ""
    key: str = field(default_factory=lambda: "ph_test_" + uuid.uuid4().hex)
    overrides: dict[str, Any] = field(default_factory=dict)
    url: str = "http://plughost.test"

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="inproc-app", daemon=True)
        self.transport: httpx.ASGITransport | None = None
        self._lifespan: _Lifespan | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> InProcessServer:
        from plughost.api.app import create_app
        from plughost.config import Settings

        self.home.mkdir(parents=True, exist_ok=True)
        settings = Settings(
            home=self.home, bootstrap_key=self.key, database_url=self.database_url, **self.overrides
        )
        app = create_app(settings)
        self._thread.start()
        self._lifespan = _Lifespan(app)
        self.call(self._lifespan.startup())
        self.transport = httpx.ASGITransport(app=app)
        return self

    def stop(self) -> None:
        if self._lifespan is not None:
            self.call(self._lifespan.shutdown())
            self._lifespan = None
        if self._thread.is_alive():
            self.call(_cancel_the_rest())
            self.call(self.loop.shutdown_default_executor())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
        self.loop.close()

    def client(self, key: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=60, transport=_LoopBridge(self), **kw
        )

    def anonymous(self) -> httpx.Client:
        """A client that sends no key (full URLs such as presigned ones work too)."""
        return httpx.Client(base_url=self.url, timeout=60, transport=_LoopBridge(self))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the admin CLI against this app's database, as an operator would beside it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
        env["PLUGHOST_HOME"] = str(self.home)
        if self.database_url:
            env["PLUGHOST_DATABASE_URL"] = self.database_url
        return subprocess.run(
            [sys.executable, "-m", "plughost", *args], env=env,
            capture_output=True, text=True, timeout=60, check=False,
        )
