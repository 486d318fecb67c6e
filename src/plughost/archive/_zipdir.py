"""Count a zip file's central-directory records without building them all in memory.

``zipfile.ZipFile`` materialises one ``ZipInfo`` per record as soon as it opens a file; a
500 MB archive of empty records would cost gigabytes. This walker locates the central
directory exactly as ``zipfile`` does (end record, optional zip64 record, directory placed
just before them) and stops counting as soon as the limit is passed.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_CENTRAL_SIG = b"PK\x01\x02"
_MAX_COMMENT = 0xFFFF


class ZipDirectoryError(ValueError):
    """The central directory cannot be located or parsed."""


def count_entries(stream: BinaryIO, file_size: int, stop_after: int) -> int:
    """Return the number of central-directory records, or ``stop_after + 1`` if there are more.

    Raises ZipDirectoryError when the end record or a directory record is malformed.
    """
    end_start, cd_size = _locate_directory(stream, file_size)
    position = end_start - cd_size
    if position < 0:
        raise ZipDirectoryError("central directory lies outside the file")
    stream.seek(position)
    count = 0
    consumed = 0
    while consumed < cd_size:
        header = stream.read(_CENTRAL.size)
        if len(header) != _CENTRAL.size:
            raise ZipDirectoryError("truncated central directory")
        fields = _CENTRAL.unpack(header)
        if fields[0] != _CENTRAL_SIG:
            raise ZipDirectoryError("bad magic number in central directory")
        skip = fields[10] + fields[11] + fields[12]
        stream.seek(skip, 1)
        consumed += _CENTRAL.size + skip
        count += 1
        if count > stop_after:
            break
    return count


def _locate_directory(stream: BinaryIO, file_size: int) -> tuple[int, int]:
    """Return (offset where the end records start, central directory size)."""
    eocd_offset = _find_end_record(stream, file_size)
    stream.seek(eocd_offset)
    cd_size = int(_EOCD.unpack(stream.read(_EOCD.size))[5])
    zip64 = _read_zip64_size(stream, eocd_offset)
    if zip64 is None:
        return eocd_offset, cd_size
    return eocd_offset - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size, zip64


def _find_end_record(stream: BinaryIO, file_size: int) -> int:
    """Offset of the end-of-central-directory record, searched for as zipfile does."""
    if file_size < _EOCD.size:
        raise ZipDirectoryError("file is too short to be a zip file")
    stream.seek(file_size - _EOCD.size)
    last = stream.read(_EOCD.size)
    if last[:4] == _EOCD_SIG and last[-2:] == b"\0\0":
        return file_size - _EOCD.size
    window_start = max(file_size - _MAX_COMMENT - 1 - _EOCD.size, 0)
    stream.seek(window_start)
    window = stream.read()
    found = window.rfind(_EOCD_SIG)
    if found < 0 or len(window) - found < _EOCD.size:
        raise ZipDirectoryError("end of central directory record not found")
    return window_start + found


def _read_zip64_size(stream: BinaryIO, eocd_offset: int) -> int | None:
    """Return the zip64 central directory size, or None when zipfile would use the plain one."""
    locator_offset = eocd_offset - _ZIP64_LOCATOR.size
    if locator_offset < 0:
        return None
    stream.seek(locator_offset)
    locator = stream.read(_ZIP64_LOCATOR.size)
    if len(locator) != _ZIP64_LOCATOR.size or locator[:4] != _ZIP64_LOCATOR_SIG:
        return None
    record_offset = locator_offset - _ZIP64_EOCD.size
    if record_offset < 0:
        return None
    stream.seek(record_offset)
    record = stream.read(_ZIP64_EOCD.size)
    if len(record) != _ZIP64_EOCD.size or record[:4] != _ZIP64_EOCD_SIG:
        return None
    return int(_ZIP64_EOCD.unpack(record)[8])
