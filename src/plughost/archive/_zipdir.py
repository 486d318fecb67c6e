"""Locate a zip file's central directory and count its records without building them.

``zipfile.ZipFile`` materialises one ``ZipInfo`` per record as soon as it opens a file; a
500 MB archive of empty records would cost gigabytes. This walker locates the central
directory exactly as ``zipfile`` does (end record, optional zip64 record, directory placed
just before them) and stops counting as soon as the limit is passed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
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


@dataclass(frozen=True)
class DirectoryLocation:
    """Where the central directory is, as ``zipfile`` finds it.

    ``start`` is where the directory really begins (just before the end records);
    ``declared_start`` is the offset the end record states (they differ when bytes were
    prepended to the archive); ``end`` is where the end record and its comment stop.
    """

    start: int
    size: int
    declared_start: int
    end: int


def locate_directory(stream: BinaryIO, file_size: int) -> DirectoryLocation:
    """Find the central directory; raise ZipDirectoryError when there is none."""
    eocd_offset = _find_end_record(stream, file_size)
    stream.seek(eocd_offset)
    fields = _EOCD.unpack(stream.read(_EOCD.size))
    cd_size, cd_offset, comment = int(fields[5]), int(fields[6]), int(fields[7])
    end = eocd_offset + _EOCD.size + comment
    end_start = eocd_offset
    zip64 = _read_zip64_directory(stream, eocd_offset)
    if zip64 is not None:
        cd_size, cd_offset = zip64
        end_start = eocd_offset - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
    start = end_start - cd_size
    if start < 0:
        raise ZipDirectoryError("central directory lies outside the file")
    return DirectoryLocation(start, cd_size, cd_offset, end)


def count_entries(stream: BinaryIO, file_size: int, stop_after: int) -> int:
    """Return the number of central-directory records, or ``stop_after + 1`` if there are more.

    Raises ZipDirectoryError when the end record or a directory record is malformed.
    """
    location = locate_directory(stream, file_size)
    cd_size = location.size
    stream.seek(location.start)
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


def _read_zip64_directory(stream: BinaryIO, eocd_offset: int) -> tuple[int, int] | None:
    """Return the zip64 directory (size, offset), or None when zipfile uses the plain one."""
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
    fields = _ZIP64_EOCD.unpack(record)
    return int(fields[8]), int(fields[9])
