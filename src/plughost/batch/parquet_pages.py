"""The page sizes of a Parquet column chunk, read from its page headers alone.

pyarrow reads a column chunk page by page, but holds each page whole (compressed, then
decompressed); the footer does not say how large the pages are. :func:`check_pages` walks the
headers of a chunk's pages (each a small Thrift compact-protocol struct in front of its data;
the data is skipped, never read) and refuses a page past ``PLUGHOST_BATCH_MAX_PARQUET_PAGE_BYTES``
before the reader would allocate it.
"""

from __future__ import annotations

from typing import IO

from plughost.batch.formats import InputFormatError

PAGE_SETTING = "PLUGHOST_BATCH_MAX_PARQUET_PAGE_BYTES"
FIRST_READ = 256
MAX_HEADER_BYTES = 16 << 20  # what pyarrow allows a page header
# field types of the compact protocol with a fixed size, in bytes
_FIXED = {1: 0, 2: 0, 3: 1, 7: 8}
_VARINT = (4, 5, 6)


class _Short(Exception):
    """The header runs past the bytes read so far."""


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise _Short
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise _Short
        self.pos += n

    def value(self, kind: int, depth: int) -> None:
        """Skip one value of compact type ``kind``."""
        if depth > 64:
            raise ValueError("nested too deep")
        if kind in _FIXED:
            self.skip(_FIXED[kind])
        elif kind in _VARINT:
            self.varint()
        elif kind == 8:
            self.skip(self.varint())
        elif kind in (9, 10):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(size):
                self.value(head & 0x0F if head & 0x0F not in (1, 2) else 3, depth + 1)
        elif kind == 11:
            size = self.varint()
            types = self.byte() if size else 0
            for _ in range(size):
                self.value(types >> 4, depth + 1)
                self.value(types & 0x0F, depth + 1)
        elif kind == 12:
            self.struct(depth + 1)
        else:
            raise ValueError(f"unknown field type {kind}")

    def struct(self, depth: int, wanted: dict[int, int] | None = None) -> None:
        """Skip a struct; the i32/i64 fields whose ids ``wanted`` holds are stored in it."""
        field = 0
        while (head := self.byte()) != 0:
            delta, kind = head >> 4, head & 0x0F
            field = field + delta if delta else _zigzag(self.varint())
            if wanted is not None and field in wanted and kind in (5, 6):
                wanted[field] = _zigzag(self.varint())
            else:
                self.value(kind, depth)


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _header(src: IO[bytes], at: int, room: int) -> tuple[int, int, int]:
    """(header length, uncompressed size, compressed size) of the page header at ``at``."""
    size = FIRST_READ
    while True:
        src.seek(at)
        cursor = _Cursor(src.read(min(size, room)))
        sizes = {2: -1, 3: -1}
        try:
            cursor.struct(0, sizes)
            return cursor.pos, sizes[2], sizes[3]
        except _Short:
            if size >= min(MAX_HEADER_BYTES, room):
                raise ValueError("page header runs past its column chunk") from None
            size *= 64


def check_pages(src: IO[bytes], start: int, length: int, max_page: int, where: str) -> None:
    """InputFormatError when a page of the chunk at ``start`` (``length`` bytes) is past
    ``max_page`` bytes, or its headers do not describe the chunk."""
    pos, end = start, start + length
    while pos < end:
        try:
            header, uncompressed, compressed = _header(src, pos, end - pos)
        except ValueError as exc:
            raise InputFormatError(f"the Parquet input is corrupt: {where}: {exc}") from None
        if uncompressed < 0 or compressed < 0 or pos + header + compressed > end:
            raise InputFormatError(
                f"the Parquet input is corrupt: {where}: a page at byte {pos} claims "
                f"{compressed} bytes, past its column chunk"
            )
        if max(uncompressed, compressed) > max_page:
            raise InputFormatError(
                f"Parquet {where}: a page at byte {pos} holds {max(uncompressed, compressed)} "
                f"bytes, past the {max_page} {PAGE_SETTING} allows (write the file with "
                "smaller pages: pyarrow's data_page_size and write_batch_size)",
                {"offset": pos, "max_page_bytes": max_page},
            )
        pos += header + compressed
