"""Inside a Ray Data actor: the job's sandboxed batch worker on this node, and the way to it.

No plugin code of a batch job runs in Ray's own processes (they hold the raylet's
environment, the node's network and the Ray user's files). Each actor of the window's
``map_batches`` pool starts the local backend's batch worker on its node: ``python -I -m
plughost.batch.worker`` under the node's sandbox (bubblewrap, the plugin folder read-only,
no network unless the namespace has egress, its own uid, seccomp, rlimits with
``compute_profile.actor_memory_gb`` as the address-space cap, a scrubbed environment), the
same launch as :mod:`plughost.batch.launcher`, the way a Serve replica starts its realtime
worker (:mod:`plughost.backends.ray.worker`). Each batch Ray Data hands the actor (one chunk
of the input) goes to the worker as an Arrow IPC frame over its pipes and comes back as the
worker's ``result`` frame, so the worker runs ``prepare`` and the steps on it exactly as a
local worker runs a chunk. Ray Data still distributes the batches over the actors and
nodes.

A worker that cannot start (pipeline.py fails to load, strict mode on a node missing a
layer) makes every batch of the actor answer ``fatal``: the server fails the job with that
message, as it does locally. A worker that dies mid-batch fails that batch's rows (stage
``worker``) and is replaced, at most ``max_restarts`` times per actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from plughost.batch.protocol import ROW_ID, table_to_ipc

log = logging.getLogger("plughost.batch.ray")

RESULT_SCHEMA = pa.schema(
    [
        ("ipc", pa.binary()),
        ("errors", pa.string()),
        ("limit", pa.int64()),
        ("fatal", pa.string()),
        ("output", pa.string()),
    ]
)
MAX_OUTPUT_LINES = 1000  # per batch; the rest is counted in one marker line
MAX_LINE_CHARS = 8192


@dataclass(frozen=True)
class RayBatchConfig:
    """What each actor needs (built by the server, sent as plain data)."""

    plugin_package: str  # gcs:// URI of the plugin folder's package
    init: dict[str, Any]  # the batch worker's init frame (parameters, manifest, ...)
    sandbox: dict[str, Any] = field(default_factory=dict)  # ray_node.sandbox_fields
    env_package: str = ""  # gcs:// URI of the plugin environment, if any
    namespace_id: str | None = None
    memory_gb: float = 2.0
    start_timeout_s: float = 120.0
    max_restarts: int = 3
    # PLUGHOST_UNSAFE_BATCH_RAY_IN_PROCESS (bench only): the steps run in this actor,
    # unsandboxed, so the sandbox's cost can be measured against it
    in_process: bool = False
    # the job's container mailbox actor (plughost.batch.ray_mailbox); None: no container
    mailbox: Any = None


class SandboxedSteps:
    """A ``map_batches`` callable class: one sandboxed batch worker per actor."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = RayBatchConfig(**config)
        self.fatal: str | None = None
        self._loop = asyncio.new_event_loop()
        threading.Thread(
            target=self._loop.run_forever, name="plughost-batch-host", daemon=True
        ).start()
        self._sandbox: Any = None
        self._worker: Any = None
        self._spec: Any = None
        self._pipeline: Any = None
        self._restarts = 0
        self._output: list[list[Any]] = []
        self._dropped = 0
        self._output_lock = threading.Lock()  # lines arrive on the loop thread
        try:
            self._plugin_dir, self._env_path = self._fetch()
            if self.config.in_process:
                self._pipeline = self._load_in_process()
            else:
                self._sandbox = self._create_sandbox()
                self._start()
        except Exception as exc:  # noqa: BLE001 - the plugin's or the node's failure, reported per batch
            log.warning("the batch worker could not start: %s", exc)
            self.fatal = str(exc) or type(exc).__name__

    # -- start ---------------------------------------------------------------------------------
    def _fetch(self) -> tuple[Path, Path | None]:
        from plughost.backends.ray.node import fetch_package

        plugin_dir = fetch_package(self.config.plugin_package)
        env = fetch_package(self.config.env_package) if self.config.env_package else None
        return plugin_dir, env

    def _create_sandbox(self) -> Any:
        from plughost.backends.ray.node import WorkerConfig, create_sandbox
        from plughost.backends.ray.node import drop_hidden_import_paths as drop_hidden

        config = WorkerConfig(sandbox=self.config.sandbox).sandbox_config()
        # this process's import path (bound into the sandbox) may hold the server's home
        drop_hidden(sys.path, config.hidden)
        return create_sandbox(config)

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def _start(self) -> None:
        from plughost.batch.launcher import BatchWorker, WorkerFailed, WorkerSpec

        launch = None
        if self._sandbox.enabled:
            launch = self._sandbox.replica_launch(
                self._plugin_dir,
                self.config.namespace_id,
                {"memory_gb": self.config.memory_gb},
                env_dir=self._env_path,
            )
        self._spec = WorkerSpec(
            plugin_dir=self._plugin_dir, sandbox=launch, env_path=self._env_path,
            # the namespace's models at their real paths (bubblewrap names its mounts)
            env=self._sandbox.models.env(self.config.namespace_id, wrapped=False),
        )
        try:
            self._worker = self._run(
                BatchWorker.start(
                    self._spec,
                    self.config.init,
                    self.config.start_timeout_s,
                    self._keep_line,
                    self._container if self.config.mailbox is not None else None,
                )
            )
        except BaseException:
            self._sandbox.release(launch)
            self._spec = None
            raise
        if not isinstance(self._worker, BatchWorker):  # pragma: no cover - defensive
            raise WorkerFailed("the batch worker did not start")

    async def _container(self, request: Any) -> dict[str, Any]:
        """The worker's container call, to the server through the job's mailbox."""
        from plughost.batch.ray_mailbox import ask

        return await ask(self.config.mailbox, request)

    def _keep_line(self, pid: int, line: str) -> None:
        """A line the worker printed: shipped to the server with the next batch's result
        (the server logs it as it logs a local batch worker's output)."""
        with self._output_lock:
            if len(self._output) < MAX_OUTPUT_LINES:
                self._output.append([pid, line[:MAX_LINE_CHARS]])
            else:
                self._dropped += 1

    def _take_output(self) -> list[list[Any]]:
        with self._output_lock:
            lines, self._output = self._output, []
            if self._dropped:
                lines.append([0, f"[plughost] {self._dropped} more lines of output dropped"])
                self._dropped = 0
        return lines

    def _load_in_process(self) -> Any:
        from plughost.batch.pipeline import load_pipeline

        if self._env_path is not None:
            sys.path.append(str(self._env_path))
        init = self.config.init
        return load_pipeline(
            self._plugin_dir,
            init.get("parameters") or {},
            init.get("manifest") or {},
            init.get("dataset_size"),
        )

    # -- batches -------------------------------------------------------------------------------
    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.fatal is not None:
            return _result(fatal=self.fatal, output=self._take_output())
        body = table_to_ipc(batch)
        if self._pipeline is not None:
            from plughost.batch.rows import data_sources
            from plughost.batch.worker.main import answer_chunk

            sources = data_sources(self.config.init.get("manifest"))
            header, payload = answer_chunk(self._pipeline, {"type": "chunk"}, body, sources)
            return _result(payload, header.get("errors") or [], header.get("limit"))
        return self._through_worker(batch, body)

    def _through_worker(self, batch: pa.Table, body: bytes) -> pa.Table:
        from plughost.batch.launcher import WorkerFailed

        try:
            header, payload = self._run(_call(self._worker, body))
        except WorkerFailed as exc:
            self._retire()
            self._restarts += 1
            if self._restarts > self.config.max_restarts:
                self.fatal = f"batch workers crashed {self._restarts} times; last: {exc}"
                return _result(fatal=self.fatal, output=self._take_output())
            try:
                self._start()
            except Exception as again:  # noqa: BLE001 - reported as the job's failure
                self.fatal = str(again)
            errors = [_worker_error(batch, str(exc))]
            return _result(errors=errors, output=self._take_output())
        if header.get("type") != "result":
            return _result(fatal=str(header.get("message") or header), output=self._take_output())
        errors = header.get("errors") or []
        return _result(payload, errors, header.get("limit"), output=self._take_output())

    def _retire(self) -> None:
        worker, spec = self._worker, self._spec
        self._worker = self._spec = None
        if worker is not None:
            with contextlib.suppress(Exception):
                self._run(worker.kill(), 10)
        if spec is not None and self._sandbox is not None:
            self._sandbox.release(spec.sandbox)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._retire()
            self._loop.call_soon_threadsafe(self._loop.stop)


async def _call(worker: Any, body: bytes) -> tuple[dict[str, Any], bytes]:
    """One chunk through the worker; then a few turns of the loop, so the output lines the
    worker wrote before its reply (already in its stderr pipe) are read with this batch."""
    reply = await worker.call({"type": "chunk"}, body)
    for _ in range(3):
        await asyncio.sleep(0)
    return reply  # type: ignore[no-any-return]


def _result(
    payload: bytes = b"",
    errors: list[dict[str, Any]] | None = None,
    limit: int | None = None,
    fatal: str | None = None,
    output: list[list[Any]] | None = None,
) -> pa.Table:
    """One row per batch: the output rows as IPC, the error ranges as JSON, the row limit
    ``prepare`` set, or the reason the worker cannot run at all; the worker's output lines
    since the last batch as JSON ``[pid, line]`` pairs."""
    return pa.Table.from_pydict(
        {
            "ipc": [payload],
            "errors": [orjson.dumps(errors or []).decode()],
            "limit": [limit if isinstance(limit, int) else None],
            "fatal": [fatal],
            "output": [orjson.dumps(output or []).decode()],
        },
        schema=RESULT_SCHEMA,
    )


def _worker_error(batch: pa.Table, message: str) -> dict[str, Any]:
    ids = batch.column(ROW_ID).to_pylist() if ROW_ID in batch.column_names else []
    return {
        "first_row": min(ids) if ids else None,
        "last_row": max(ids) if ids else None,
        "rows": batch.num_rows,
        "stage": "worker",
        "message": message,
    }
