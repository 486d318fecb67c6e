"""Check that a zip file reads the same from the front as from its central directory.

``zipfile`` trusts the central directory at the end of the file; streaming readers walk the
local headers from the front. An archive whose two views differ (a local header naming
another file or declaring other sizes, data hidden in gaps between members, members that
overlap or share bytes) unpacks differently depending on the tool, so it is refused.

Rules: members are laid out back to back from offset 0 (in any order), each a local header,
its data, and a data descriptor when its flags announce one; the central
directory follows the last of them; each local header repeats the directory's name,
compression method, encryption flag, CRC and sizes (or defers the last three to a data
descriptor that repeats them).
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Sequence
from typing import BinaryIO

from plughost.archive.entries import entry_error

_LOCAL = struct.Struct("<4s2B4HL2L2H")
_LOCAL_SIG = b"PK\x03\x04"
_DESCRIPTOR_SIG = b"PK\x07\x08"
_FLAG_ENCRYPTED = 0x1
_FLAG_DESCRIPTOR = 0x8
_FLAG_UTF8 = 0x800
_ZIP64_MARK = 0xFFFFFFFF
_ZIP64_EXTRA_ID = 0x0001
_DESCRIPTOR_LAYOUTS = (
    (True, struct.Struct("<4s3L")),
    (True, struct.Struct("<4sL2Q")),
    (False, struct.Struct("<3L")),
    (False, struct.Struct("<L2Q")),
)


class _Mismatch(Exception):
    """One member's local header contradicts the central directory."""


def local_header_problems(
    stream: BinaryIO, infos: Sequence[zipfile.ZipInfo], directory_start: int
) -> list[str]:
    """Every way the local headers disagree with ``infos`` (the central directory)."""
    problems: list[str] = []
    spans: list[tuple[int, int, str]] = []
    for info in infos:
        try:
            end = _member_end(stream, info)
        except _Mismatch as exc:
            problems.append(entry_error(info.orig_filename, str(exc)))
        else:
            spans.append((info.header_offset, end, info.orig_filename))
    if problems:
        return problems
    return _layout_problems(sorted(spans), directory_start)


def _layout_problems(spans: list[tuple[int, int, str]], directory_start: int) -> list[str]:
    """Members must tile the file from 0 to the central directory: no gaps, no overlaps."""
    problems: list[str] = []
    expected = 0
    for start, end, name in spans:
        if start < expected:
            problems.append(entry_error(name, "overlaps the previous member's data"))
        elif start > expected:
            problems.append(
                entry_error(name, f"{start - expected} unlisted bytes lie before this member")
            )
        expected = max(expected, end)
    if expected < directory_start:
        problems.append(
            f"archive has {directory_start - expected} unlisted bytes before its central directory"
        )
    elif expected > directory_start:
        problems.append("archive members overlap the central directory")
    return problems


def _member_end(stream: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Offset just past the member's data (and descriptor); raise _Mismatch on any conflict."""
    stream.seek(info.header_offset)
    raw = stream.read(_LOCAL.size)
    if len(raw) != _LOCAL.size or raw[:4] != _LOCAL_SIG:
        raise _Mismatch("local header is missing where the central directory points")
    fields = _LOCAL.unpack(raw)
    flags, method, crc, compressed, size = fields[3], fields[4], fields[7], fields[8], fields[9]
    name = stream.read(fields[10])
    extra = stream.read(fields[11])
    encoding = "utf-8" if flags & _FLAG_UTF8 else "cp437"
    local_name = name.decode(encoding, "replace")
    if local_name != info.orig_filename:
        raise _Mismatch(f"local header names {local_name!r} instead")
    if method != info.compress_type:
        raise _Mismatch("local header declares another compression method")
    if (flags ^ info.flag_bits) & _FLAG_ENCRYPTED:
        raise _Mismatch("local header and central directory disagree on encryption")
    data_end = info.header_offset + _LOCAL.size + len(name) + len(extra) + info.compress_size
    if flags & _FLAG_DESCRIPTOR:
        return data_end + _descriptor_length(stream, data_end, info)
    size, compressed = _zip64_sizes(extra, size, compressed)
    if (crc, compressed, size) != (info.CRC, info.compress_size, info.file_size):
        raise _Mismatch("local header declares another CRC or size than the central directory")
    return data_end


def _zip64_sizes(extra: bytes, size: int, compressed: int) -> tuple[int, int]:
    """Replace 0xFFFFFFFF sizes by the zip64 extra field's values (size first)."""
    if _ZIP64_MARK not in (size, compressed):
        return size, compressed
    position = 0
    while position + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, position)
        body = extra[position + 4 : position + 4 + length]
        position += 4 + length
        if kind != _ZIP64_EXTRA_ID:
            continue
        values = list(struct.unpack_from(f"<{len(body) // 8}Q", body))
        if size == _ZIP64_MARK and values:
            size = values.pop(0)
        if compressed == _ZIP64_MARK and values:
            compressed = values.pop(0)
        return size, compressed
    raise _Mismatch("local header lacks the zip64 sizes it announces")


def _descriptor_length(stream: BinaryIO, offset: int, info: zipfile.ZipInfo) -> int:
    """Length of the data descriptor at ``offset``, which must repeat the directory's values."""
    stream.seek(offset)
    raw = stream.read(24)
    expected = (info.CRC, info.compress_size, info.file_size)
    for signed, layout in _DESCRIPTOR_LAYOUTS:
        if len(raw) < layout.size:
            continue
        values = layout.unpack_from(raw)
        if signed and values[0] != _DESCRIPTOR_SIG:
            continue
        if tuple(values[1:] if signed else values) == expected:
            return layout.size
    raise _Mismatch("data descriptor disagrees with the central directory")
