"""Batch jobs on the Ray backend: the same chunks and parts as local, computed by Ray Data.

The server reads the input (the same streaming reader, mime inference and row ids as the
local backend), uploads the plugin folder (and its environment) as packages, puts a window
of chunks in the object store and runs :func:`plughost.batch.ray_window.run_window` on the
cluster. Ray Data hands the chunks to an actor pool whose actors each run the plugin's
pipeline in a sandboxed batch worker on their node (:mod:`plughost.batch.ray_steps`): plugin
code runs neither in the server nor in Ray's own processes. Results are committed chunk by
chunk exactly like local results, so resume, skip/fail, ``limit`` and the output file behave
the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from plughost.backends.base import Backend
from plughost.batch.parts import ChunkRecord
from plughost.batch.pipeline import actor_memory_gb_of, max_concurrency_of
from plughost.batch.protocol import ROW_ID, ipc_to_table
from plughost.batch.ray_steps import RayBatchConfig
from plughost.batch.reader import iter_tables
from plughost.batch.runner import ChunkFeed, Counters, JobFailed, JobPlan, error_message
from plughost.config import Settings
from plughost.persistence.batches import BatchView
from plughost.sandbox.host import config_from_settings

log = logging.getLogger("plughost.batch.ray")
worker_log = logging.getLogger("plughost.batch.worker")
GIB = 1024**3
# A window is one Ray Data run (a few seconds to start its actor pool): large windows
# amortise that; chunks stay the unit of commit and resume.
WINDOW_CHUNKS = 64
WINDOW_BYTES = 128 * 1024**2
PACKAGE_PIN_S = 3600  # a window's actors (on any node) fetch the packages when they start


class RayDataJobs:
    """``run(view, plan, counters)`` for the scheduler when ``PLUGHOST_BACKEND=ray``."""

    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        # the Ray backend's own session (one ray.init per process): its connect is shared
        self._backend = backend
        self._session: Any = None
        if settings.unsafe_batch_ray_in_process:
            log.warning(
                "PLUGHOST_UNSAFE_BATCH_RAY_IN_PROCESS is set: batch pipelines on Ray run "
                "UNSANDBOXED in Ray's actors (a bench comparison only). Never set it in use."
            )

    async def _connect(self) -> Any:
        if self._backend is not None:
            shared = await self._backend.ray_session()
            if shared is not None:
                return shared
        if self._session is None:
            from plughost.backends.ray.session import ServeSession

            self._session = ServeSession(self.settings)
        if not self._session.connected:
            await asyncio.to_thread(self._session.connect)
        return self._session

    def _actor_config(self, session: Any, plan: JobPlan, view: BatchView) -> dict[str, Any]:
        """Upload the plugin folder (and its environment) as packages the actors fetch, and
        describe the sandboxed worker each actor starts (blocking)."""
        from plughost.backends.ray.node import sandbox_fields

        manifest = plan.init.get("manifest") or {}
        env_path = plan.env.get("path")
        config = RayBatchConfig(
            plugin_package=session.upload(plan.plugin_dir),
            env_package=session.upload(env_path) if env_path is not None else "",
            init=plan.init,
            sandbox=sandbox_fields(config_from_settings(self.settings)),
            namespace_id=view.namespace_id,
            memory_gb=actor_memory_gb_of(manifest),
            start_timeout_s=plan.start_timeout_s,
            max_restarts=plan.max_restarts,
            in_process=self.settings.unsafe_batch_ray_in_process,
        )
        return dict(config.__dict__)

    async def run(self, view: BatchView, plan: JobPlan, counters: Counters) -> int | None:
        session = await self._connect()
        config = await asyncio.to_thread(self._actor_config, session, plan, view)
        if plan.container is None:
            return await self._run(session, config, plan, counters)
        from plughost.batch.ray_mailbox import close_mailbox, open_mailbox, serve_mailbox

        # the actors' container calls reach the server through this job's mailbox actor
        mailbox = await asyncio.to_thread(open_mailbox)
        config["mailbox"] = mailbox
        pump = asyncio.create_task(serve_mailbox(mailbox, plan.container))
        try:
            return await self._run(session, config, plan, counters)
        finally:
            pump.cancel()
            await asyncio.to_thread(close_mailbox, mailbox)

    async def _run(
        self, session: Any, config: dict[str, Any], plan: JobPlan, counters: Counters
    ) -> int | None:
        packages = [config["plugin_package"], config["env_package"]]
        packages = [uri for uri in packages if uri]
        done = await asyncio.to_thread(plan.parts.finished)
        for record in sorted(done.values(), key=lambda r: r.chunk):
            counters.add(record, this_run=False)
        if plan.on_error == "fail" and counters.errors:
            raise JobFailed(error_message(counters.errors[0]), list(counters.errors))
        manifest = plan.init.get("manifest") or {}
        options = await asyncio.to_thread(_actor_options, manifest, plan.workers)
        options["batch_rows"] = plan.chunk_rows  # one chunk per call, as a local worker gets
        feed = ChunkFeed(
            iter_tables(plan.input_path, plan.input_format, plan.chunk_rows, plan.input_limits),
            plan.chunk_rows,
            set(done),
        )
        limit = min((r.limit for r in done.values() if r.limit is not None), default=None)
        while window := await _take(feed, WINDOW_CHUNKS, WINDOW_BYTES):
            await asyncio.to_thread(session.pin, packages, PACKAGE_PIN_S)
            results = await self._run_window(config, options, window)
            found = await asyncio.to_thread(self._commit, plan, window, results, counters)
            limit = found if limit is None else limit if found is None else min(limit, found)
        return limit

    async def _run_window(
        self,
        config: dict[str, Any],
        options: dict[str, Any],
        window: list[tuple[int, bytes, int, int]],
    ) -> list[dict[str, Any]]:
        import ray

        from plughost.batch.ray_window import run_window

        refs = [ray.put(ipc_to_table(body)) for _, body, _, _ in window]
        # no runtime_env: the task and its actors start in Ray's prestarted workers (plughost
        # is installed on the nodes, as for realtime replicas) and load no plugin code
        task = ray.remote(run_window).options(num_cpus=0, max_retries=0)
        ref = task.remote(config, options, *refs)
        try:
            return list(await asyncio.wrap_future(ref.future()))
        except asyncio.CancelledError:
            ray.cancel(ref, force=True, recursive=True)
            raise
        except ray.exceptions.RayError as exc:
            raise JobFailed(f"Ray Data job failed: {_ray_message(exc)}") from exc

    def _commit(
        self,
        plan: JobPlan,
        window: list[tuple[int, bytes, int, int]],
        results: list[dict[str, Any]],
        counters: Counters,
    ) -> int | None:
        """Commit the window chunk by chunk; the smallest row limit ``prepare`` set."""
        import pyarrow as pa

        _log_output(results, plan.mask_line)
        fatal = next((r["fatal"] for r in results if r.get("fatal")), None)
        if fatal is not None:
            raise JobFailed(str(fatal))
        tables: dict[int, list[pa.Table]] = {index: [] for index, _, _, _ in window}
        errors: dict[int, list[dict[str, Any]]] = {index: [] for index, _, _, _ in window}
        first_chunk = window[0][0]
        limits = [int(r["limit"]) for r in results if r.get("limit") is not None]
        for result in results:
            for entry in orjson.loads(result.get("errors") or "[]"):
                first = entry.get("first_row")
                chunk = int(first) // plan.chunk_rows if first is not None else first_chunk
                errors.setdefault(chunk, []).append(entry)
            table = ipc_to_table(result["ipc"]) if result.get("ipc") else None
            if table is None or not table.num_rows:
                continue
            ids = table.column(ROW_ID).to_pylist()
            for chunk in sorted({i // plan.chunk_rows for i in ids}):
                mask = pa.array([i // plan.chunk_rows == chunk for i in ids])
                tables.setdefault(chunk, []).append(table.filter(mask))
        all_errors = [e for index in sorted(errors) for e in errors[index]]
        if all_errors and plan.on_error == "fail":
            raise JobFailed(error_message(all_errors[0]), all_errors)
        limit = min(limits) if limits else None
        for index, _, _, rows in window:
            parts = tables.get(index) or []
            table = (
                _sorted(pa.concat_tables(parts, promote_options="permissive")) if parts else None
            )
            failed = sum(int(e.get("rows") or 0) for e in errors.get(index, []))
            record = ChunkRecord(
                index,
                rows,
                table.num_rows if table is not None else 0,
                failed,
                errors.get(index, []),
                limit,
            )
            plan.parts.commit(record, table)
            counters.add(record, this_run=True)
        return limit


def _log_output(
    results: list[dict[str, Any]], mask_line: Callable[[str], str] | None = None
) -> None:
    """The Ray batch workers' output, logged as a local batch worker's is (secret values of
    the job's organization masked)."""
    for result in results:
        for pid, line in orjson.loads(result.get("output") or "[]"):
            worker_log.info("worker %s (Ray): %s", pid, mask_line(line) if mask_line else line)


def _actor_options(manifest: dict[str, Any], workers: int) -> dict[str, Any]:
    """The step actors' pool: up to ``max_concurrency`` actors sharing all but one of the
    cluster's CPUs (that one runs ``prepare``'s tasks; a pool holding every CPU would starve
    them and the dataset would never move)."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    concurrency = max(1, min(max_concurrency_of(manifest), workers, int(max(1.0, total))))
    share = max(0.25, min(1.0, (total - 1.0) / concurrency))
    return {
        "concurrency": concurrency,
        "num_cpus": share,
        "memory_bytes": int(actor_memory_gb_of(manifest) * GIB),
    }


async def _take(feed: ChunkFeed, count: int, max_bytes: int) -> list[tuple[int, bytes, int, int]]:
    """The next chunks, up to ``count`` of them or ``max_bytes`` of rows."""
    window: list[tuple[int, bytes, int, int]] = []
    size = 0
    while len(window) < count and size < max_bytes:
        item = await feed.next()
        if item is None:
            break
        window.append(item)
        size += len(item[1])
    return window


def _sorted(table: Any) -> Any:
    return table.sort_by(ROW_ID)


def _ray_message(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
