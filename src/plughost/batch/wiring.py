"""The batch part of a server: the API's batch service and the scheduler that runs its jobs,
built complete with the runtime and started and stopped by the app's lifespan (and by a
takeover, which stops it and may start it again)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from plughost.backends.base import Backend
from plughost.batch.scheduler import BatchScheduler, RunJob
from plughost.batch.service import BatchService
from plughost.config import Settings

log = logging.getLogger("plughost.batch")


class BatchPart:
    """The batch service and its scheduler; :meth:`start` runs the scheduler on the running
    loop once this server leads, :meth:`stop` ends it (running jobs stay ``running`` in the
    table and resume from their chunks on the next start, here or on the next leader)."""

    def __init__(
        self,
        settings: Settings,
        service: BatchService,
        scheduler: BatchScheduler,
        backend: Backend,
        until_leading: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.scheduler = scheduler
        self.backend = backend  # the controller's: Ray Data jobs share its Ray session
        self.until_leading = until_leading  # several servers: returns once this one leads
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the scheduler (on the running loop) once this server leads."""
        self._task = asyncio.create_task(self._when_leading(), name="plughost-batches")

    async def stop(self) -> None:
        """Stop the scheduler and its jobs; safe when not started."""
        await self.scheduler.shutdown()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _when_leading(self) -> None:
        """Several servers on one database: only the controller's leader runs batch jobs, so
        the scheduler's start (which requeues jobs left running) never takes a job another
        live server runs; a new leader resumes the old one's from their chunks."""
        if self.until_leading is not None:
            await self.until_leading()
        # Ray Data's modules (pandas, pyarrow) load in a thread: the loop keeps answering
        run_job = await asyncio.to_thread(self._run_job)
        await self.scheduler.run(run_job)

    def _run_job(self) -> RunJob | None:
        """Ray Data for a Ray server (the leader's backend exists from here on), else None:
        local workers."""
        if self.settings.backend != "ray":
            return None
        try:
            from plughost.batch.ray_data import RayDataJobs
        except ImportError:
            log.warning("Ray Data batch jobs are unavailable; batch jobs run on local workers")
            return None
        return RayDataJobs(self.settings, self.backend).run
