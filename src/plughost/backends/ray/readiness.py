"""Waiting for a new Serve application's replicas to be ready, and the log line that says
where its start went (``plughost.backends.ray.serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from plughost.backends.base import StartFailed

if TYPE_CHECKING:
    from plughost.backends.ray.direct import DirectSet
    from plughost.backends.ray.serve import RayBackend

log = logging.getLogger("plughost.backend.ray")

START_POLL_S = 0.25
READY_POLL_S = 0.02  # the application's own status, once the workers answer


async def wait_running(
    backend: RayBackend, name: str, direct: DirectSet, options: dict[str, Any]
) -> float | None:
    """Until every initial replica's worker is connected and Serve says RUNNING, or Serve
    reports the replicas failing.

    Serve's RUNNING is waited for too: a replica that dies before Serve counts it as
    started is taken for a constructor failure, and with one constructor attempt the
    deployment would fail with Serve's generic message instead of being replaced. Once
    the workers answer it is read every READY_POLL_S from the application's own status
    (one small controller call, ~1 ms, against ~15 ms of CPU for Serve's full status,
    which is read every START_POLL_S for failures meanwhile); RUNNING follows the
    workers by one or two ticks of Serve's control loop (0.1 s). Returns when the
    workers were first all connected (monotonic), for the start's log line."""
    scaling = options.get("autoscaling_config") or {}
    want = int(options.get("num_replicas") or scaling.get("initial_replicas") or 1)
    timeout = backend.settings.replica_start_timeout_s
    deadline = time.monotonic() + timeout
    workers_at: float | None = None
    state = None
    full_at = 0.0
    while True:
        direct.changed.clear()
        ready = direct.ready >= want
        if workers_at is None and ready:
            workers_at = time.monotonic()
        if ready and await backend._blocking(backend.session.app_status, name) == "RUNNING":
            return workers_at
        if time.monotonic() - full_at >= START_POLL_S:
            full_at = time.monotonic()
            state = (await backend.board.fresh()).get(name)
            if state is not None:
                if state.status == "RUNNING" and (ready or not direct.infos):
                    return workers_at
                if state.status == "DEPLOY_FAILED" or state.startup_failing:
                    raise StartFailed(state.error or f"Serve could not start {name}")
        if time.monotonic() >= deadline:
            detail = f": {state.error}" if state is not None and state.error else ""
            raise StartFailed(f"replicas were not ready within {timeout:g} s{detail}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READY_POLL_S if ready else START_POLL_S):
                await direct.changed.wait()


def log_start(
    name: str,
    infos: Iterable[dict[str, Any]],
    began: float,
    uploaded: float,
    deployed: float,
    deployed_at: float,
    workers_at: float | None,
    running: float,
) -> None:
    """One info line: where an application's start went, the replicas' own steps included."""
    steps = [
        {
            **{k: v for k, v in info.get("start_s", {}).items() if k != "began_at"},
            # when the replica's constructor began, after the deploy call returned
            "constructor": round(float(info["start_s"]["began_at"]) - deployed_at, 3),
        }
        if "began_at" in info.get("start_s", {})
        else info.get("start_s", {})
        for info in infos
    ]
    log.info(
        "%s up in %.2f s: packages %.2f s, Serve deploy call %.2f s, workers connected "
        "%.2f s later, Serve RUNNING %.2f s later, handle %.2f s (in the replicas: %s)",
        name,
        time.monotonic() - began,
        uploaded - began,
        deployed - uploaded,
        (workers_at or running) - deployed,
        running - deployed,
        time.monotonic() - running,
        steps,
    )
