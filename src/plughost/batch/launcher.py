"""Server side of one batch worker process: launch (sandboxed like a replica), frames, stop.

A worker is ``python -I -m plughost.batch.worker`` in its own session, in the plugin folder,
with an environment built only from the server's base variables and the sandbox's; its
stdin and stdout carry :mod:`plughost.batch.protocol` frames, its stderr goes to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from plughost.backends.base import BASE_ENV
from plughost.backends.local.launch import DEFAULT_PATH
from plughost.batch.protocol import (
    CONTAINER,
    CONTAINER_REPLY,
    HEADER,
    MAX_HEADER_BYTES,
    ProtocolError,
    encode_frame,
)
from plughost.domain.container import UNAVAILABLE, error_reply
from plughost.logs.terminal import bounded_line
from plughost.sandbox.bwrap import ENV_MOUNT
from plughost.sandbox.policy import SandboxLaunch

log = logging.getLogger("plughost.batch.worker")
STDERR_LINE_MAX_BYTES = 16384  # a worker's output line kept (PLUGHOST_LOG_LINE_MAX_BYTES' default)

# A batch worker starts from every replica's environment, plus: one thread per math library
# (the job's workers already fill the cores) and Arrow on the system allocator (jemalloc and
# mimalloc reserve address space that the memory rlimit counts).
WORKER_ENV = {
    **BASE_ENV,
    "PATH": DEFAULT_PATH,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}
STREAM_LIMIT = 1 << 20
MAX_CONTAINER_CALLS = 256  # a worker's container calls in flight; more get an error reply
ContainerHandler = Callable[[Any], Awaitable[dict[str, Any]]]
TAIL_LINES = 30


class WorkerFailed(Exception):
    """The worker could not start, said ``fatal``, or died; the message says why."""


@dataclass(frozen=True)
class WorkerSpec:
    plugin_dir: Path
    sandbox: SandboxLaunch | None = None
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)
    env_path: Path | None = None  # the plugin environment (plughost.envs), appended to sys.path

    def argv(self) -> list[str]:
        prefix = list(self.sandbox.argv_prefix) if self.sandbox else []
        seen = self.sandbox.plugin_dir if self.sandbox else str(self.plugin_dir)
        argv = [*prefix, self.python, "-I", "-m", "plughost.batch.worker", "--plugin-dir", seen]
        if self.sandbox is not None:
            argv += ["--sandbox", self.sandbox.policy_json]
        if self.env_path is not None:
            # bubblewrap shows the environment at a fixed mount point
            wrapped = bool(self.sandbox and self.sandbox.prefix)
            argv += ["--env-path", ENV_MOUNT if wrapped else str(self.env_path)]
        return argv

    def environment(self) -> dict[str, str]:
        env = {**WORKER_ENV, "HOME": str(self.plugin_dir), **self.env}
        if self.sandbox is not None:
            env.update(self.sandbox.env)
        return env


class BatchWorker:
    """One running worker; :meth:`call` sends a frame and waits for the reply frame."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        spec: WorkerSpec,
        container: ContainerHandler | None = None,
        mask_line: Callable[[str], str] | None = None,
    ) -> None:
        self.proc = proc
        # each output line passes here before it is kept or logged (secret values masked)
        self.mask_line = mask_line
        self.spec = spec
        # answers plugin code's container calls (None: an error reply says there is none)
        self.container = container
        self._container_tasks: set[asyncio.Task[None]] = set()
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        # every output line also goes here when set (a Ray actor ships them to the server)
        self.on_line: Callable[[int, str], None] | None = None
        self._pump = asyncio.create_task(self._read_stderr())

    @classmethod
    async def start(
        cls,
        spec: WorkerSpec,
        init: dict[str, Any],
        timeout_s: float,
        on_line: Callable[[int, str], None] | None = None,
        container: ContainerHandler | None = None,
        mask_line: Callable[[str], str] | None = None,
    ) -> BatchWorker:
        proc = await asyncio.create_subprocess_exec(
            *spec.argv(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=spec.plugin_dir,
            env=spec.environment(),
            start_new_session=True,
            limit=STREAM_LIMIT,
        )
        worker = cls(proc, spec, container, mask_line)
        worker.on_line = on_line
        try:
            header, _ = await asyncio.wait_for(worker.call({"type": "init", **init}), timeout_s)
        except TimeoutError as exc:
            await worker.kill()
            raise WorkerFailed(f"the batch worker was not ready within {timeout_s:.0f} s") from exc
        except BaseException:
            await worker.kill()
            raise
        if header.get("type") != "ready":
            await worker.kill()
            raise WorkerFailed(str(header.get("message") or header))
        return worker

    async def _read_stderr(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # past the reader's limit: asyncio dropped it, the pump goes on
                line = b"[... a line longer than 64 KiB cut]"
            if not line:
                break
            text = line.decode("utf-8", "replace").rstrip()
            if self.mask_line is not None:  # before the cut, which could halve a secret
                text = self.mask_line(text)
            # a plugin's terminal control made visible, the line cut (as replicas' lines are)
            text = bounded_line(text, STDERR_LINE_MAX_BYTES)
            self.tail.append(text)
            if self.on_line is not None:
                self.on_line(self.proc.pid, text)
            else:
                log.info("worker %s: %s", self.proc.pid, text)

    async def call(self, header: dict[str, Any], body: bytes = b"") -> tuple[dict[str, Any], bytes]:
        """Send one frame and read the reply; WorkerFailed when the worker dies meanwhile.
        Container calls the worker sends meanwhile are answered on the side."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(encode_frame(header, body))
            await self.proc.stdin.drain()
            while True:
                reply, payload = await self._read_frame()
                if not isinstance(reply, dict) or reply.get("type") != CONTAINER:
                    break
                self._answer_container(reply)
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            ProtocolError,
            orjson.JSONDecodeError,
        ) as exc:
            raise WorkerFailed(await self._death_message(exc)) from exc
        if not isinstance(reply, dict):
            raise WorkerFailed("the batch worker sent a reply that is not a JSON object")
        return reply, payload

    async def _read_frame(self) -> tuple[Any, bytes]:
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readexactly(HEADER.size)
        head_len, body_len = HEADER.unpack(raw)
        if head_len > MAX_HEADER_BYTES:
            raise ProtocolError(f"frame header of {head_len} bytes")
        reply = orjson.loads(await self.proc.stdout.readexactly(head_len))
        payload = await self.proc.stdout.readexactly(body_len) if body_len else b""
        return reply, payload

    def _answer_container(self, frame: dict[str, Any]) -> None:
        """Answer one container request in a task (the next frames are read meanwhile)."""
        cid = frame.get("cid")
        if not isinstance(cid, int):
            log.warning("batch worker %s sent a container request without a cid", self.proc.pid)
            return
        task = asyncio.create_task(self._container_reply(cid, frame.get("request")))
        self._container_tasks.add(task)
        task.add_done_callback(self._container_tasks.discard)

    async def _container_reply(self, cid: int, request: Any) -> None:
        if self.container is None or len(self._container_tasks) > MAX_CONTAINER_CALLS:
            reply = error_reply(UNAVAILABLE, "this batch worker's server takes no container calls")
        else:
            reply = await self.container(request)
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            return
        try:
            stdin.write(encode_frame({"type": CONTAINER_REPLY, "cid": cid, "reply": reply}))
        except (ConnectionError, TypeError) as exc:  # gone, or a reply that is not JSON
            log.warning("container reply to batch worker %s not sent: %s", self.proc.pid, exc)

    async def _death_message(self, exc: BaseException) -> str:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 2.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._pump), 1.0)
        code = self.proc.returncode
        last = next((t for t in reversed(self.tail) if t.strip()), "")
        why = f"exited with code {code}" if code is not None else f"stopped answering ({exc})"
        hint = (
            " (out of memory? compute_profile.actor_memory_gb caps each worker)"
            if code in (-9, 137) or "MemoryError" in last
            else ""
        )
        return f"the batch worker {why}{hint}" + (f": {last}" if last else "")

    async def close(self, timeout_s: float = 5.0) -> None:
        """Close stdin (the worker exits after its current chunk), kill it if it lingers."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            await self.kill()
        await self._finish_pump()

    async def kill(self) -> None:
        """Kill the worker's whole process group (the sandbox wrapper and the worker)."""
        for task in list(self._container_tasks):
            task.cancel()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        await self._finish_pump()

    async def _finish_pump(self) -> None:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._pump, 1.0)
