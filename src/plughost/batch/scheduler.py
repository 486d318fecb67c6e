"""Runs queued batch jobs, a few at a time, and moves them to their final status.

The loop is the whole recovery story: at start every job left ``running`` by a previous
server goes back to ``queued`` and resumes from its committed chunks. Shutting down stops
the workers and leaves the jobs ``running`` in the table, to be resumed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plughost.archive import ArchiveError, IntakeLimits, find_plugin_root, unpack_archive
from plughost.batch.job import Counters, JobFailed, JobPlan
from plughost.batch.service import BatchService
from plughost.config import Settings
from plughost.domain.batch_states import BatchStatus
from plughost.domain.container import ContainerCalls, ContainerScope
from plughost.errors import PlughostError
from plughost.persistence.batches import BatchView
from plughost.persistence.tables import Plugin
from plughost.sandbox.host import Sandbox, models_of
from plughost.storage.base import ArchiveStore

if TYPE_CHECKING:
    from plughost.envs import PluginEnvironments

log = logging.getLogger("plughost.batch")
PROGRESS_EVERY_S = 0.5

# runs one job elsewhere than on local workers (Ray Data); returns the row limit, if any
RunJob = Callable[[BatchView, JobPlan, Counters], Any]


@dataclass(frozen=True)
class PluginFacts:
    storage_key: str
    manifest: dict[str, Any]


def _env_key(batch_id: str) -> int:
    """A number standing for the job where environments expect a release id (it only keys
    their build-time estimates); negative, so it never meets a real release id."""
    return -(int(batch_id.encode().hex()[-12:], 16) or 1)


class BatchScheduler:
    def __init__(
        self,
        settings: Settings,
        service: BatchService,
        store: ArchiveStore,
        limits: IntakeLimits,
        sandbox: Sandbox | None,
        envs: PluginEnvironments | None = None,
        container: ContainerCalls | None = None,
        mask: Callable[[str, str], str] | None = None,
    ) -> None:
        """``container`` answers the jobs' container calls, each for its job's organization;
        ``mask(org_id, text)`` hides that organization's secret values in the workers' output
        and in a failed job's messages."""
        self.settings = settings
        self.container = container
        self.mask = mask
        self.service = service
        self.store = store
        self.limits = limits
        self.sandbox = sandbox if sandbox is not None and sandbox.enabled else None
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.envs = envs  # the realtime replicas' environments, shared by batch jobs
        self.run_job: RunJob | None = None  # set per run (see run); None: local workers
        service.bell.listen(self.wake, self.cancel)

    # -- loop ---------------------------------------------------------------------------------
    def wake(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def cancel(self, batch_id: str) -> None:
        """Stop a job's task (its status is already ``cancelled``)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel_task, batch_id)

    def _cancel_task(self, batch_id: str) -> None:
        task = self.tasks.get(batch_id)
        if task is not None:
            task.cancel()
        else:
            self._cleanup_cancelled(batch_id)

    async def run(self, run_job: RunJob | None = None) -> None:
        """Run jobs until :meth:`shutdown`; ``run_job`` runs each (else local workers). May
        run again after a shutdown (a takeover stops and restarts it)."""
        self._stopping = False
        self.run_job = run_job
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._requeue_interrupted)
        while not self._stopping:
            try:
                await self._start_queued()
            except Exception:
                log.exception("batch scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()

    def _requeue_interrupted(self) -> None:
        for view in self.service.batches.with_status({BatchStatus.RUNNING}):
            self.service.batches.move(
                view.id, BatchStatus.RUNNING, BatchStatus.QUEUED, "server restarted; resuming"
            )

    async def _start_queued(self) -> None:
        free = self.settings.batch_max_jobs - len(self.tasks)
        if free <= 0:
            return
        queued = await asyncio.to_thread(self.service.batches.with_status, {BatchStatus.QUEUED})
        for view in queued[:free]:
            moved = await asyncio.to_thread(
                self.service.batches.move, view.id, BatchStatus.QUEUED, BatchStatus.RUNNING
            )
            if moved:
                task = asyncio.create_task(self._execute(view), name=f"batch-{view.id}")
                self.tasks[view.id] = task
                task.add_done_callback(lambda _t, bid=view.id: self._done(bid))

    def _done(self, batch_id: str) -> None:
        self.tasks.pop(batch_id, None)
        self.wake()

    async def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one job ------------------------------------------------------------------------------
    def _work_dir(self, batch_id: str) -> Path:
        return self.settings.batch_dir / batch_id

    async def _execute(self, view: BatchView) -> None:
        counters = Counters(rows_total=view.rows_total)
        self.service.live[view.id] = counters
        flusher = asyncio.create_task(self._flush_progress(view.id, counters))
        try:
            plan = await asyncio.to_thread(self._plan, view, counters)
            await self._prepare_environment(view, plan)
            await self.service_progress(view.id, counters)
            runner = self.run_job or self._run_local
            limit = await runner(view, plan, counters)
            await asyncio.to_thread(self._complete, view, plan, counters, limit)
        except asyncio.CancelledError:
            if not self._stopping:
                await asyncio.to_thread(self._cleanup_cancelled, view.id)
            raise
        except (JobFailed, PlughostError) as exc:
            errors = getattr(exc, "errors", None) or list(counters.errors)
            message = exc.message
            if self.mask is not None:  # a plugin's exception text may quote a secret it read
                message = self.mask(view.organization_id, message)
                errors = [
                    {**e, "message": self.mask(view.organization_id, str(e.get("message", "")))}
                    if isinstance(e, dict) and "message" in e else e
                    for e in errors
                ]
            await asyncio.to_thread(self._fail, view, message, errors, counters)
        except Exception as exc:
            log.exception("batch %s failed unexpectedly", view.id)
            await asyncio.to_thread(
                self._fail, view, f"internal error: {type(exc).__name__}: {exc}", [], counters
            )
        finally:
            flusher.cancel()
            self.service.live.pop(view.id, None)

    async def _prepare_environment(self, view: BatchView, plan: JobPlan) -> None:
        """The plugin environment its realtime replicas would get (built now if need be)."""
        if self.envs is None:
            return
        from plughost.envs.stage import dependencies_of

        manifest = plan.init.get("manifest") or {}
        try:
            plan.env["path"] = await self.envs.prepare(
                _env_key(view.id), dependencies_of(manifest), plan.plugin_dir
            )
        except Exception as exc:  # EnvBuildFailed, BadRequirement: the job cannot run
            raise JobFailed(f"cannot prepare the plugin environment: {exc}") from exc

    async def _run_local(self, view: BatchView, plan: JobPlan, counters: Counters) -> int | None:
        """Run the job on local worker processes; the row limit ``prepare`` set, if any."""
        from plughost.batch.runner import LocalJobRun  # loaded on the first job, as in _plan

        run = LocalJobRun(plan, counters, lambda: None)
        await run.run()
        return run.limit

    async def service_progress(self, batch_id: str, counters: Counters) -> None:
        await asyncio.to_thread(
            self.service.batches.progress,
            batch_id,
            rows_total=counters.rows_total,
            rows_done=counters.rows_done,
            rows_failed=counters.rows_failed,
            errors=list(counters.errors),
        )

    async def _flush_progress(self, batch_id: str, counters: Counters) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            with contextlib.suppress(Exception):
                await self.service_progress(batch_id, counters)

    def _plugin_facts(self, plugin_pk: int) -> PluginFacts:
        with self.service.db.session() as s:
            plugin = s.get(Plugin, plugin_pk)
            if plugin is None:
                raise JobFailed("the plugin was deleted")
            return PluginFacts(plugin.storage_key, dict(plugin.manifest or {}))

    def _unpack(self, storage_key: str, target: Path) -> Path:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        try:
            unpack_archive(self.store.local_path(storage_key), target, self.limits)
            return find_plugin_root(target)
        except ArchiveError as exc:
            raise JobFailed(f"cannot unpack the plugin's archive: {exc}") from exc

    def _plan(self, view: BatchView, counters: Counters) -> JobPlan:
        # loaded on the first job: the server starts without pandas/pyarrow
        from plughost.batch.launcher import WorkerSpec
        from plughost.batch.parts import PartStore
        from plughost.batch.pipeline import (
            actor_memory_gb_of,
            batch_size_of,
            compute_profile,
            max_concurrency_of,
        )
        from plughost.batch.reader import scan
        from plughost.batch.reader_limits import InputLimits

        facts = self._plugin_facts(view.plugin_pk)
        input_path = self.store.local_path(view.input_key)
        if not input_path.is_file():
            raise JobFailed("the job's input is gone from the store")
        # no column check: input_mappings and input_schema are metadata, as in Mixpeek; a
        # step reading a column the rows lack fails with its own KeyError, naming it
        limits = InputLimits.of(self.settings)
        rows_total = view.rows_total or scan(input_path, view.input_format, limits)
        counters.rows_total = rows_total
        work = self._work_dir(view.id)
        plugin_dir = self._unpack(facts.storage_key, work / "plugin")
        batch_size = batch_size_of(facts.manifest)
        chunk_rows = batch_size * max(1, math.ceil(self.settings.batch_chunk_rows / batch_size))
        cores = os.cpu_count() or 1
        cap = self.settings.batch_max_workers or cores
        workers = max(
            1,
            min(max_concurrency_of(facts.manifest), cores, cap, math.ceil(rows_total / chunk_rows)),
        )
        memory = {"memory_gb": actor_memory_gb_of(facts.manifest)}
        sandbox = self.sandbox
        env: dict[str, Path | None] = {"path": None}
        models = models_of(self.settings)  # a bubblewrap launch names its own mounts

        def make_spec() -> WorkerSpec:
            env_path = env["path"]
            launch = (
                sandbox.replica_launch(plugin_dir, view.namespace_id, memory, env_dir=env_path)
                if sandbox
                else None
            )
            return WorkerSpec(
                plugin_dir=plugin_dir, sandbox=launch, env_path=env_path,
                env=models.env(view.namespace_id, wrapped=False),
            )

        def release_spec(spec: WorkerSpec) -> None:
            if sandbox is not None:
                sandbox.release(spec.sandbox)

        init = {
            "parameters": view.parameters,
            "manifest": facts.manifest,
            "dataset_size": rows_total,
            "compute_profile": compute_profile(facts.manifest),
        }
        return JobPlan(
            input_path=input_path,
            input_format=view.input_format,
            plugin_dir=plugin_dir,
            parts=PartStore(work / "parts"),
            workers=workers,
            chunk_rows=chunk_rows,
            on_error=view.on_error,
            init=init,
            make_spec=make_spec,
            release_spec=release_spec,
            start_timeout_s=self.settings.batch_worker_start_timeout_s,
            env=env,
            container=(
                None if self.container is None
                else partial(
                    self.container.call, ContainerScope(view.namespace_id, view.organization_id)
                )
            ),
            mask_line=None if self.mask is None else partial(self.mask, view.organization_id),
            input_limits=limits,
        )

    # -- endings ------------------------------------------------------------------------------
    def output_key(self, view: BatchView) -> str:
        return f"batches/{view.organization_id}/{view.namespace_id}/{view.id}/output.parquet"

    def _complete(
        self, view: BatchView, plan: JobPlan, counters: Counters, limit: int | None
    ) -> None:
        key = self.output_key(view)
        plan.parts.merge(self.store.local_path(key), limit)
        moved = self.service.batches.move(
            view.id,
            BatchStatus.RUNNING,
            BatchStatus.COMPLETED,
            "completed"
            + (f" with {counters.rows_failed} rows skipped" if counters.rows_failed else ""),
            output_key=key,
            rows_total=counters.rows_total,
            rows_done=counters.rows_done,
            rows_failed=counters.rows_failed,
            errors=list(counters.errors),
        )
        if not moved:  # cancelled while the output was being written
            self.store.delete(key)
        self._cleanup(view, keep_output=moved)

    def _fail(
        self, view: BatchView, message: str, errors: list[dict[str, Any]], counters: Counters
    ) -> None:
        self.service.batches.move(
            view.id,
            BatchStatus.RUNNING,
            BatchStatus.FAILED,
            message,
            rows_total=counters.rows_total,
            rows_done=counters.rows_done,
            rows_failed=counters.rows_failed,
            errors=errors,
        )
        self._cleanup(view, keep_output=False)

    def _cleanup_cancelled(self, batch_id: str) -> None:
        view = self.service.batches.get(batch_id)
        if view is not None and view.status is BatchStatus.CANCELLED:
            self._cleanup(view, keep_output=False)

    def _cleanup(self, view: BatchView, keep_output: bool) -> None:
        shutil.rmtree(self._work_dir(view.id), ignore_errors=True)
        if view.input_owned:
            with contextlib.suppress(PlughostError, OSError):
                self.store.delete(view.input_key)
        if not keep_output:
            with contextlib.suppress(PlughostError, OSError):
                self.store.delete(self.output_key(view))
