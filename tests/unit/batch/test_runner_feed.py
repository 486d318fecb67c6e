"""The chunk feed of a local job: blocks of several chunks, bounded in bytes, and a failed
block's chunks handed out again one at a time."""

from __future__ import annotations

import asyncio

import pyarrow as pa

from plughost.batch.protocol import ROW_ID, ipc_to_table
from plughost.batch.runner import ChunkFeed


def _chunks(count: int, rows: int = 4) -> list[pa.Table]:
    return [pa.table({"text": [f"{k}-{i}" for i in range(rows)]}) for k in range(count)]


def test_a_block_holds_consecutive_chunks_with_their_row_ids() -> None:
    feed = ChunkFeed(iter(_chunks(5)), 4, skip={1}, total_rows=20)
    chunks, body = asyncio.run(feed.next_block(3))
    assert chunks == [(0, 0, 4), (2, 8, 4), (3, 12, 4)]
    assert ipc_to_table(body).column(ROW_ID).to_pylist() == [0, 1, 2, 3, *range(8, 16)]
    assert feed.remaining() == 1
    assert asyncio.run(feed.next_block(3))[0] == [(4, 16, 4)]
    assert asyncio.run(feed.next_block(3)) is None


def test_a_block_stops_before_its_byte_bound_but_takes_one_chunk_at_least() -> None:
    feed = ChunkFeed(iter(_chunks(4)), 4, skip=set())
    one = _chunks(1)[0].nbytes + 4 * 8  # and the row-id column
    assert len(asyncio.run(feed.next_block(4, max_bytes=1))[0]) == 1
    assert len(asyncio.run(feed.next_block(4, max_bytes=int(2.5 * one)))[0]) == 2
    assert len(asyncio.run(feed.next_block(4))[0]) == 1


def test_the_chunks_of_a_failed_block_come_back_alone_and_first() -> None:
    feed = ChunkFeed(iter(_chunks(4)), 4, skip=set())
    block = asyncio.run(feed.next_block(2))
    feed.retry(block)
    again = [asyncio.run(feed.next_block(4)) for _ in range(2)]
    assert [b[0] for b in again] == [[(0, 0, 4)], [(1, 4, 4)]]
    assert ipc_to_table(again[1][1]).column("text").to_pylist() == [f"1-{i}" for i in range(4)]
    assert asyncio.run(feed.next_block(4))[0] == [(2, 8, 4), (3, 12, 4)]
