"""Start and stop the batch part of a server (called from the app's lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from plughost.batch.scheduler import BatchScheduler
from plughost.batch.service import BatchService
from plughost.runtime import Runtime

log = logging.getLogger("plughost.batch")


@dataclass
class BatchRuntime:
    service: BatchService
    scheduler: BatchScheduler
    task: asyncio.Task[None]

    async def stop(self) -> None:
        await self.scheduler.shutdown()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def start_batches(runtime: Runtime) -> BatchRuntime:
    """Build the batch service and start its scheduler on the running loop."""
    settings = runtime.settings
    service = BatchService(settings, runtime.db, runtime.store, runtime.signer)
    scheduler = BatchScheduler(
        settings, service, runtime.store, runtime.uploads.limits, runtime.sandbox
    )
    scheduler.envs = getattr(runtime.controller, "envs", None)
    task = asyncio.create_task(_when_leading(runtime, scheduler), name="plughost-batches")
    return BatchRuntime(service, scheduler, task)


async def _when_leading(runtime: Runtime, scheduler: BatchScheduler) -> None:
    """Several servers on one database (issue 16): only the controller's leader runs batch
    jobs, so the scheduler's start (which requeues jobs left running) never takes a job
    another live server runs; a new leader resumes the old one's from their chunks."""
    cluster = getattr(runtime, "cluster", None)
    if cluster is not None:
        await cluster.until_leading()
    if runtime.settings.backend == "ray":  # the leader's backend exists from here on
        try:
            from plughost.batch.ray_data import RayDataJobs
        except ImportError:
            log.warning("Ray Data batch jobs are unavailable; batch jobs run on local workers")
        else:
            scheduler.run_job = RayDataJobs(runtime.settings, runtime.controller.backend).run
    await scheduler.run()
