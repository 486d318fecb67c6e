"""One batch job on the local backend: chunks of the input through sandboxed workers.

Workers (up to ``compute_profile.max_concurrency``, the machine's cores and the server's cap)
each take the next unread chunk, so the input is read once, in order, and at most one chunk
per worker is in memory. Each result is committed as a part before the next chunk is
taken (:mod:`.parts`); a resumed job skips the chunks already committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pyarrow as pa

from plughost.batch.job import Counters, JobFailed, JobPlan
from plughost.batch.launcher import BatchWorker, WorkerFailed, WorkerSpec
from plughost.batch.parts import ChunkRecord
from plughost.batch.protocol import ROW_ID, ipc_to_table, table_to_ipc
from plughost.batch.reader import iter_chunks

log = logging.getLogger("plughost.batch")


def error_message(entry: dict[str, Any]) -> str:
    return f"rows {entry.get('first_row')}-{entry.get('last_row')} failed: {entry.get('message')}"


class ChunkFeed:
    """The input's chunks, handed out one at a time to whichever worker asks (read in a
    thread; row ids attached on the way; the worker adds Mixpeek's columns, batch/rows.py)."""

    def __init__(self, chunks: Iterator[pd.DataFrame], rows: int, skip: set[int]) -> None:
        self._chunks = chunks
        self._rows = rows
        self._skip = skip
        self._next = 0
        self._lock = asyncio.Lock()

    def _read(self) -> tuple[int, bytes, int, int] | None:
        while True:
            frame = next(self._chunks, None)
            if frame is None:
                return None
            index, self._next = self._next, self._next + 1
            if index in self._skip:
                continue
            start = index * self._rows
            frame[ROW_ID] = range(start, start + len(frame))
            table = pa.Table.from_pandas(frame, preserve_index=False)
            return index, table_to_ipc(table), start, len(frame)

    async def next(self) -> tuple[int, bytes, int, int] | None:
        async with self._lock:
            return await asyncio.to_thread(self._read)


class LocalJobRun:
    """Runs one job to its end; raises JobFailed, or CancelledError when stopped."""

    def __init__(self, plan: JobPlan, counters: Counters, on_progress: Callable[[], None]) -> None:
        self.plan = plan
        self.counters = counters
        self.on_progress = on_progress
        self.limit: int | None = None
        self._workers: list[tuple[BatchWorker, WorkerSpec]] = []
        self._restarts = 0

    async def run(self) -> None:
        plan = self.plan
        done = await asyncio.to_thread(plan.parts.finished)
        for record in sorted(done.values(), key=lambda r: r.chunk):
            self.counters.add(record, this_run=False)
            self.limit = _min(self.limit, record.limit)
        self._fail_on(list(self.counters.errors))
        chunks = iter_chunks(plan.input_path, plan.input_format, plan.chunk_rows)
        feed = ChunkFeed(chunks, plan.chunk_rows, set(done))
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(plan.workers):
                    group.create_task(self._drive(feed))
        except* JobFailed as failures:
            raise failures.exceptions[0] from None
        finally:
            await self.stop_workers()

    async def _start_worker(self) -> tuple[BatchWorker, WorkerSpec]:
        spec = self.plan.make_spec()
        try:
            worker = await BatchWorker.start(
                spec, self.plan.init, self.plan.start_timeout_s, container=self.plan.container,
                mask_line=self.plan.mask_line,
            )
        except BaseException as exc:
            self.plan.release_spec(spec)
            if isinstance(exc, WorkerFailed):
                raise JobFailed(str(exc)) from exc
            raise
        self._workers.append((worker, spec))
        return worker, spec

    async def _retire(self, pair: tuple[BatchWorker, WorkerSpec]) -> None:
        with contextlib.suppress(ValueError):
            self._workers.remove(pair)
        await pair[0].kill()
        self.plan.release_spec(pair[1])

    async def _drive(self, feed: ChunkFeed) -> None:
        """Feed one worker until the input ends; a chunk's result is committed while the
        worker already computes the next one (at most one commit in flight)."""
        pair = await self._start_worker()
        committing: asyncio.Task[None] | None = None
        try:
            while (item := await feed.next()) is not None:
                index, body, start, rows = item
                try:
                    header, payload = await pair[0].call({"type": "chunk", "chunk": index}, body)
                except WorkerFailed as exc:
                    await self._retire(pair)
                    entry = _range_error(start, rows, str(exc), "worker")
                    await self._commit(ChunkRecord(index, rows, 0, rows, [entry]), None)
                    self._restarts += 1
                    if self._restarts > self.plan.max_restarts:
                        raise JobFailed(
                            f"batch workers crashed {self._restarts} times; last: {exc}"
                        ) from exc
                    pair = await self._start_worker()
                    continue
                if committing is not None:
                    await committing
                committing = asyncio.create_task(
                    self._commit(_record(index, rows, header, payload), payload)
                )
            if committing is not None:
                await committing
        finally:
            if committing is not None and not committing.done():
                committing.cancel()

    async def _commit(self, record: ChunkRecord, payload: bytes | None) -> None:
        self._fail_on(record.errors)
        table = ipc_to_table(payload) if payload else None
        out = ChunkRecord(
            record.chunk,
            record.rows_in,
            table.num_rows if table is not None else 0,
            record.rows_failed,
            record.errors,
            record.limit,
        )
        await asyncio.to_thread(self.plan.parts.commit, out, table)
        self.limit = _min(self.limit, out.limit)
        self.counters.add(out, this_run=True)
        self.on_progress()

    def _fail_on(self, errors: list[dict[str, Any]]) -> None:
        if errors and self.plan.on_error == "fail":
            raise JobFailed(error_message(errors[0]), errors)

    async def stop_workers(self) -> None:
        pairs, self._workers = list(self._workers), []
        await asyncio.gather(*(p[0].kill() for p in pairs), return_exceptions=True)
        for _, spec in pairs:
            self.plan.release_spec(spec)


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _range_error(start: int, rows: int, message: str, stage: str) -> dict[str, Any]:
    return {
        "first_row": start,
        "last_row": start + rows - 1,
        "rows": rows,
        "stage": stage,
        "message": message,
    }


def _record(index: int, rows: int, header: dict[str, Any], payload: bytes) -> ChunkRecord:
    errors = [e for e in header.get("errors") or [] if isinstance(e, dict)]
    failed = sum(int(e.get("rows") or 0) for e in errors)
    limit = header.get("limit")
    return ChunkRecord(index, rows, 0, failed, errors, limit if isinstance(limit, int) else None)
