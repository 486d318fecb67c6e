"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from plughost import __version__
from plughost.api import (
    routes_batches,
    routes_deploy,
    routes_extractors,
    routes_inference,
    routes_models,
    routes_namespace,
    routes_observe,
    routes_org,
    routes_policies,
    routes_secrets,
    routes_store,
    ui,
)
from plughost.api.errors import install_error_handlers
from plughost.api.methods import method_table
from plughost.api.openapi import fastpath_docs, install_openapi
from plughost.config import Settings
from plughost.dataplane.fastpath import FastPath
from plughost.dataplane.peer import PeerPath
from plughost.errors import ServiceUnavailableError
from plughost.server.loopwatch import LoopWatchdog
from plughost.server.wiring import Runtime, build_runtime


def create_app(settings: Settings | None = None) -> FastPath:
    """Build the ASGI app: the FastAPI app behind the hot paths
    (:mod:`plughost.dataplane.fastpath`, :mod:`plughost.dataplane.peer`).

    The runtime (database, services) is created in the lifespan."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings)
        runtime.deployments.loop = asyncio.get_running_loop()
        app.state.runtime = runtime
        cluster = runtime.cluster  # several servers on one database
        if cluster is not None:  # the lease first: the first server leads at once
            await cluster.start()
        loop_task = asyncio.create_task(runtime.controller.run(), name="plughost-controller")
        runtime.batches.start()
        runtime.observation.start()
        if runtime.policies is not None:  # other servers' and the CLI's policy changes
            runtime.policies.start()
        # FastAPI builds an included router's routes (their pydantic models) on the first
        # request that reaches them, 100 ms or more on the loop: the document builds them now
        app.openapi()
        # what start-up built lives as long as the server: out of the cyclic collector's way,
        # whose full passes over it were a tenth of the request path's CPU at concurrency 32
        gc.freeze()
        # watches the loop while serving (start-up and shutdown block it on purpose)
        stall_s = settings.loop_stall_ms / 1000
        watchdog = LoopWatchdog(stall_s).start() if stall_s else None
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            gc.unfreeze()  # an app started again in this process (tests) freezes afresh
            if watchdog is not None:
                watchdog.stop()
            await runtime.batches.stop()  # before the lease goes: the next leader resumes them
            if cluster is not None:  # hand the lease over before stopping replicas
                await cluster.stop()
            await runtime.controller.shutdown()
            runtime.stop_egress()
            await runtime.container.aclose()  # after the replicas: no container call is left
            await runtime.observation.stop()
            if runtime.policies is not None:
                await runtime.policies.stop()
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
            runtime.db.dispose()

    app = FastAPI(
        title="plughost",
        version=__version__,
        lifespan=lifespan,
        # no default_response_class: with FastAPI's own, the routes' return types let pydantic
        # write the JSON bytes directly (plughost.api.responses)
    )
    app.state.ready = False
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        if not app.state.ready:
            raise ServiceUnavailableError("starting")
        runtime: Runtime = app.state.runtime
        cluster = runtime.cluster
        return {
            "status": "ok",
            "version": __version__,
            "database": runtime.db.engine.dialect.name,
            # several servers on one database: whether this one runs the controller
            "role": "leader" if cluster is None or cluster.leading() else "follower",
            # calls this server sent on to the leader, and those it made to replicas itself
            "peer_calls": {
                "forwarded": cluster.peers.forwarded if cluster is not None else 0,
                "direct": cluster.peers.direct_calls if cluster is not None else 0,
            },
            "sandbox": runtime.sandbox_status(),
        }

    app.include_router(routes_deploy.router)
    app.include_router(routes_namespace.router)
    app.include_router(routes_inference.router)
    app.include_router(routes_org.router)
    app.include_router(routes_secrets.router)
    app.include_router(routes_policies.router)
    app.include_router(routes_models.router)
    app.include_router(routes_extractors.router)
    app.include_router(routes_store.router)
    app.include_router(routes_batches.router)
    app.include_router(routes_batches.store_router)
    app.include_router(routes_observe.router)
    app.include_router(routes_observe.metrics_router)
    app.include_router(ui.router)
    app.include_router(fastpath_docs)
    install_openapi(app)
    app.state.methods = method_table(app.routes)
    return PeerPath(FastPath(app, app.state), app.state)
