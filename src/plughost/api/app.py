"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import ORJSONResponse

from plughost import __version__
from plughost.api import (
    routes_deploy,
    routes_inference,
    routes_namespace,
    routes_org,
    routes_store,
)
from plughost.api.errors import install_error_handlers
from plughost.api.fastpath import FastPath
from plughost.config import Settings
from plughost.errors import ServiceUnavailableError
from plughost.runtime import Runtime, build_runtime


def create_app(settings: Settings | None = None) -> FastPath:
    """Build the ASGI app: the FastAPI app behind the hot paths (:mod:`.fastpath`).

    The runtime (database, services) is created in the lifespan."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings)
        runtime.deployments.loop = asyncio.get_running_loop()
        app.state.runtime = runtime
        loop_task = asyncio.create_task(runtime.controller.run(), name="plughost-controller")
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await runtime.controller.shutdown()
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
            runtime.db.dispose()

    app = FastAPI(
        title="plughost",
        version=__version__,
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
    )
    app.state.ready = False
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        if not app.state.ready:
            raise ServiceUnavailableError("starting")
        runtime: Runtime = app.state.runtime
        return {
            "status": "ok",
            "version": __version__,
            "database": runtime.db.engine.dialect.name,
            "sandbox": runtime.sandbox.status() if runtime.sandbox else {"mode": "off"},
        }

    app.include_router(routes_deploy.router)
    app.include_router(routes_namespace.router)
    app.include_router(routes_inference.router)
    app.include_router(routes_org.router)
    app.include_router(routes_store.router)
    return FastPath(app, app.state)
