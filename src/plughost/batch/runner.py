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
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from plughost.batch.formats import InputFormatError
from plughost.batch.job import Counters, JobFailed, JobPlan
from plughost.batch.launcher import BatchWorker, WorkerFailed, WorkerSpec
from plughost.batch.parts import ChunkRecord
from plughost.batch.protocol import ROW_ID, ipc_to_table, table_to_ipc
from plughost.batch.reader import iter_tables

log = logging.getLogger("plughost.batch")


def error_message(entry: dict[str, Any]) -> str:
    return f"rows {entry.get('first_row')}-{entry.get('last_row')} failed: {entry.get('message')}"


# A block (several chunks in one frame to a worker) is sized from the worker's measured time
# per row so that it takes about BLOCK_TARGET_S: a fast plugin's chunks then share a frame's
# fixed costs (pipe round trip, Arrow framing, the hops between threads), a slow plugin's go
# one at a time as before. Bounded in rows by MAX_BLOCK_CHUNKS and in memory by
# MAX_BLOCK_BYTES of input; commits, progress and resume stay per chunk.
BLOCK_TARGET_S = 0.25
MAX_BLOCK_CHUNKS = 32
MAX_BLOCK_BYTES = 16 << 20

Chunk = tuple[int, pa.Table, int]  # index, rows (with the row-id column), first row
# (index, first row, rows) per chunk, and their rows as one Arrow stream
Block = tuple[list[tuple[int, int, int]], bytes]


class ChunkFeed:
    """The input's chunks (Arrow tables, :func:`~plughost.batch.reader.iter_tables`), handed
    out one at a time (:meth:`next`) or a few at a time (:meth:`next_block`) to whichever
    worker asks (read in a thread; row ids attached on the way; the worker adds Mixpeek's
    columns, batch/rows.py)."""

    def __init__(
        self,
        chunks: Iterator[pa.Table],
        rows: int,
        skip: set[int],
        total_rows: int | None = None,
    ) -> None:
        self._chunks = chunks
        self._rows = rows
        self._skip = skip
        self._next = 0
        self._total = None if total_rows is None else -(-total_rows // rows)
        self._held: Chunk | None = None  # read, but left for the next block
        self._retry: deque[Chunk] = deque()  # chunks of a failed block, handed out alone
        self._lock = asyncio.Lock()

    def _take(self) -> Chunk | None:
        if self._held is not None:
            item, self._held = self._held, None
            return item
        while True:
            table = next(self._chunks, None)
            if table is None:
                return None
            index, self._next = self._next, self._next + 1
            if index in self._skip:
                continue
            start = index * self._rows
            ids = pa.array(range(start, start + table.num_rows), pa.int64())
            return index, table.append_column(ROW_ID, ids), start

    def _read(self) -> tuple[int, bytes, int, int] | None:
        item = self._take()
        if item is None:
            return None
        index, table, start = item
        return index, table_to_ipc(table), start, table.num_rows

    async def next(self) -> tuple[int, bytes, int, int] | None:
        async with self._lock:
            return await asyncio.to_thread(self._read)

    def remaining(self) -> int | None:
        """Chunks not handed out yet (None when the row count is unknown)."""
        if self._total is None:
            return None
        return max(0, self._total - self._next) + len(self._retry) + (self._held is not None)

    def retry(self, block: Block) -> None:
        """Hand the chunks of ``block`` out again, each alone (its worker died)."""
        rows = ipc_to_table(block[1])
        offset = 0
        for index, start, count in block[0]:
            self._retry.append((index, rows.slice(offset, count), start))
            offset += count

    def _read_block(self, chunks: int, max_bytes: int) -> Block | None:
        """Up to ``chunks`` chunks of one schema and at most ``max_bytes`` (at least one)."""
        if self._retry:
            index, table, start = self._retry.popleft()
            return [(index, start, table.num_rows)], block_body([table])
        taken: list[Chunk] = []
        size = 0
        while len(taken) < chunks:
            if taken and size + size / len(taken) > max_bytes:
                break  # a next chunk the size of these would not fit: it is not read yet
            item = self._take()
            if item is None:
                break
            table = item[1]
            if taken and (
                size + table.nbytes > max_bytes or not table.schema.equals(taken[0][1].schema)
            ):
                self._held = item
                break
            taken.append(item)
            size += table.nbytes
        if not taken:
            return None
        body = block_body([t for _, t, _ in taken])
        return [(i, start, t.num_rows) for i, t, start in taken], body

    async def next_block(self, chunks: int, max_bytes: int = MAX_BLOCK_BYTES) -> Block | None:
        async with self._lock:
            return await asyncio.to_thread(self._read_block, chunks, max_bytes)


def block_body(tables: list[pa.Table]) -> bytes:
    """One block's rows as one Arrow stream (its tables share a schema)."""
    return table_to_ipc(tables[0] if len(tables) == 1 else pa.concat_tables(tables))


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
        chunks = iter_tables(plan.input_path, plan.input_format, plan.chunk_rows, plan.input_limits)
        feed = ChunkFeed(chunks, plan.chunk_rows, set(done), self.counters.rows_total)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(plan.workers):
                    group.create_task(self._drive(feed))
        except* (JobFailed, InputFormatError) as failures:  # a malformed input fails the job
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
        """Feed one worker blocks of chunks until the input ends; a block's results are
        committed while the worker already computes the next one (at most one commit in
        flight)."""
        pair = await self._start_worker()
        committing: asyncio.Task[None] | None = None
        size = 1  # chunks per block; the first block of each worker is timed alone
        try:
            while (block := await feed.next_block(size)) is not None:
                chunks, body = block
                rows = sum(n for _, _, n in chunks)
                began = time.perf_counter()
                try:
                    header, payload = await pair[0].call(
                        {"type": "block", "chunks": [[i, n] for i, _, n in chunks]}, body
                    )
                except WorkerFailed as exc:
                    await self._retire(pair)
                    if len(chunks) > 1:
                        feed.retry(block)  # alone, so that only a chunk that kills it fails
                    else:
                        index, start, n = chunks[0]
                        entry = _range_error(start, n, str(exc), "worker")
                        await self._commit([(ChunkRecord(index, n, 0, n, [entry]), None)])
                        self._restarts += 1
                        if self._restarts > self.plan.max_restarts:
                            raise JobFailed(
                                f"batch workers crashed {self._restarts} times; last: {exc}"
                            ) from exc
                    pair = await self._start_worker()
                    size = 1
                    continue
                size = self._block_size(time.perf_counter() - began, rows, feed)
                results = _results(chunks, header, payload)
                if committing is not None:
                    await committing
                committing = asyncio.create_task(self._commit(results))
            if committing is not None:
                await committing
        finally:
            if committing is not None and not committing.done():
                committing.cancel()

    def _block_size(self, seconds: float, rows: int, feed: ChunkFeed) -> int:
        """Chunks per block for about BLOCK_TARGET_S of work at the rate just measured,
        leaving every worker a share of what is left."""
        per_chunk = seconds / max(1, rows) * self.plan.chunk_rows
        size = int(BLOCK_TARGET_S / per_chunk) if per_chunk > 0 else MAX_BLOCK_CHUNKS
        left = feed.remaining()
        if left is not None:
            size = min(size, -(-left // max(1, self.plan.workers)))
        return max(1, min(size, MAX_BLOCK_CHUNKS))

    async def _commit(self, results: list[tuple[ChunkRecord, bytes | None]]) -> None:
        """Commit each chunk's part and record, in order (one thread hop for all)."""
        tables: list[tuple[ChunkRecord, pa.Table | None]] = []
        for record, payload in results:
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
            tables.append((out, table))
        await asyncio.to_thread(self._commit_parts, tables)
        for out, _ in tables:
            self.limit = _min(self.limit, out.limit)
            self.counters.add(out, this_run=True)
            self.on_progress()

    def _commit_parts(self, tables: list[tuple[ChunkRecord, pa.Table | None]]) -> None:
        for out, table in tables:
            self.plan.parts.commit(out, table)

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


def _results(
    chunks: list[tuple[int, int, int]], header: dict[str, Any], payload: bytes
) -> list[tuple[ChunkRecord, bytes | None]]:
    """Each chunk's record and output rows out of a block's ``results`` frame."""
    entries = header.get("chunks")
    if (
        header.get("type") != "results"
        or not isinstance(entries, list)
        or len(entries) != len(chunks)
        or not all(isinstance(e, dict) for e in entries)
    ):
        raise JobFailed(
            f"the batch worker answered a block of {len(chunks)} chunks with a"
            f" {header.get('type')!r} frame of {len(entries) if isinstance(entries, list) else 0}"
        )
    view = memoryview(payload)
    out: list[tuple[ChunkRecord, bytes | None]] = []
    offset = 0
    for (index, _, rows), entry in zip(chunks, entries, strict=True):
        size = int(entry.get("bytes") or 0)
        body = bytes(view[offset : offset + size]) if size else None
        offset += size
        out.append((_record(index, rows, entry, b""), body))
    return out


def _record(index: int, rows: int, header: dict[str, Any], payload: bytes) -> ChunkRecord:
    errors = [e for e in header.get("errors") or [] if isinstance(e, dict)]
    failed = sum(int(e.get("rows") or 0) for e in errors)
    limit = header.get("limit")
    return ChunkRecord(index, rows, 0, failed, errors, limit if isinstance(limit, int) else None)
