"""Safe extraction of plugin archives (zip, tar.gz, plain tar).

Contract of :func:`unpack_archive`:

* the format is chosen by magic bytes, never by file name, and a file readable in two
  formats (a zip that is also a tar or gzip file) is refused (:mod:`plughost.archive.formats`);
* the entry count comes from the zip central directory, or from tar headers read one at a
  time, without materialising more than ``max_entries + 1`` of them;
* a zip's local headers must agree with its central directory, with no unlisted bytes
  between members (:mod:`plughost.archive._ziplocal`); a tar must hold nothing but zero
  blocks after its end (tarfile stops quietly at a bad header; other tools skip it and go on);
* every member header is read and checked (see :mod:`plughost.archive.entries`) before the
  first byte is written, and all problems are reported together;
* only regular files and directories are created, by this module itself (no
  ``extractall``, no tarfile filters), files with mode 0644 and directories 0755;
* bytes actually written are counted, so a header that lies cannot exceed the limits;
* a gzip stream is decompressed into an anonymous temporary file under a hard byte bound,
  stopping as soon as its compression ratio passes the limit;
* macOS litter (``__MACOSX/``, ``.DS_Store``, ``._*``) is checked like any member, then
  skipped.
"""

from __future__ import annotations

import gzip
import lzma
import os
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from plughost.archive._zipdir import ZipDirectoryError, count_entries, locate_directory
from plughost.archive._ziplocal import local_header_problems
from plughost.archive.entries import (
    Entry,
    EntryKind,
    check_entries,
    entry_error,
    is_junk,
    ratio_problem,
    summarise,
)
from plughost.archive.errors import UnsafeArchiveError
from plughost.archive.formats import ArchiveFormat, detect_format, polyglot_problem
from plughost.archive.limits import IntakeLimits

__all__ = ["NOT_AN_ARCHIVE", "ArchiveFormat", "detect_format", "unpack_archive"]

CHUNK_BYTES = 64 * 1024
NOT_AN_ARCHIVE = "archive is neither a zip nor a tar.gz file"
# Room for tar headers, padding and long-name records on top of the member data.
_TAR_OVERHEAD_PER_ENTRY = 8 * 1024
_TAR_OVERHEAD_FIXED = 64 * 1024
_ZIP_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
    RuntimeError,
)
_TAR_KINDS = (
    (tarfile.TarInfo.isreg, EntryKind.FILE),
    (tarfile.TarInfo.isdir, EntryKind.DIR),
    (tarfile.TarInfo.issym, EntryKind.SYMLINK),
    (tarfile.TarInfo.islnk, EntryKind.HARDLINK),
    (tarfile.TarInfo.ischr, EntryKind.DEVICE),
    (tarfile.TarInfo.isblk, EntryKind.DEVICE),
    (tarfile.TarInfo.isfifo, EntryKind.FIFO),
)
_ZIP_KINDS = {
    stat.S_IFLNK: EntryKind.SYMLINK,
    stat.S_IFCHR: EntryKind.DEVICE,
    stat.S_IFBLK: EntryKind.DEVICE,
    stat.S_IFIFO: EntryKind.FIFO,
    stat.S_IFSOCK: EntryKind.SOCKET,
    stat.S_IFDIR: EntryKind.DIR,
    stat.S_IFREG: EntryKind.FILE,
    0: EntryKind.FILE,
}


class _Reader(Protocol):
    def entries(self) -> list[Entry]: ...

    def open(self, entry: Entry) -> AbstractContextManager[IO[bytes]]: ...


def unpack_archive(archive_path: Path, dest: Path, limits: IntakeLimits) -> ArchiveFormat:
    """Unpack ``archive_path`` into the existing, empty directory ``dest``.

    Returns the detected format. Raises UnsafeArchiveError listing every problem; on error,
    ``dest`` may hold a partial tree that the caller should remove.
    """
    size = archive_path.stat().st_size
    if size > limits.max_archive_bytes:
        raise UnsafeArchiveError(
            [f"archive is {size} bytes, above the limit of {limits.max_archive_bytes} bytes"]
        )
    archive_format = detect_format(archive_path)
    if archive_format is None:
        raise UnsafeArchiveError([NOT_AN_ARCHIVE])
    polyglot = polyglot_problem(archive_path)
    if polyglot:
        raise UnsafeArchiveError([polyglot])
    if archive_format is ArchiveFormat.ZIP:
        with _open_zip(archive_path, size, limits) as zip_reader:
            _unpack(zip_reader, dest, limits)
    elif archive_format is ArchiveFormat.TAR_GZ:
        with tempfile.TemporaryFile(dir=dest.parent) as plain:
            _gunzip_bounded(archive_path, plain, size, limits)
            plain.seek(0)
            with _open_tar(plain, limits) as tar_reader:
                _unpack(tar_reader, dest, limits)
    else:
        with archive_path.open("rb") as stream, _open_tar(stream, limits) as tar_reader:
            _unpack(tar_reader, dest, limits)
    return archive_format


def _unpack(reader: _Reader, dest: Path, limits: IntakeLimits) -> None:
    entries = reader.entries()
    all_parts = check_entries(entries, limits)
    budget = _Budget(limits.max_unpacked_bytes)
    made: set[Path] = {dest}
    for entry, parts in zip(entries, all_parts, strict=True):
        if not parts or is_junk(parts):
            continue
        target = dest.joinpath(*parts)
        if entry.kind is EntryKind.DIR:
            _make_dirs(entry, target, dest, made)
        else:
            _make_dirs(entry, target.parent, dest, made)
            _write_file(reader, entry, target, budget)


class _Budget:
    """Counts bytes written across the whole archive."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, count: int) -> None:
        """Account for ``count`` more bytes; raise once the total passes the limit."""
        self.used += count
        if self.used > self.limit:
            raise UnsafeArchiveError(
                [f"archive unpacks to more than the limit of {self.limit} bytes"]
            )


def _make_dirs(entry: Entry, target: Path, dest: Path, made: set[Path]) -> None:
    """Create ``target`` and its missing parents below ``dest`` with mode 0755."""
    current = dest
    for part in target.relative_to(dest).parts:
        current = current / part
        if current in made:
            continue
        try:
            os.mkdir(current, 0o755)
        except OSError as exc:
            raise UnsafeArchiveError(
                [entry_error(entry.name, f"cannot create directory ({exc.strerror})")]
            ) from exc
        os.chmod(current, 0o755)
        made.add(current)


def _write_file(reader: _Reader, entry: Entry, target: Path, budget: _Budget) -> None:
    """Copy one member into a new file, refusing more bytes than its header declared."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o644)
    except OSError as exc:
        raise UnsafeArchiveError(
            [entry_error(entry.name, f"cannot create file ({exc.strerror})")]
        ) from exc
    os.fchmod(fd, 0o644)
    written = 0
    with os.fdopen(fd, "wb") as out:
        for chunk in _read_chunks(reader, entry):
            written += len(chunk)
            if written > entry.size:
                raise UnsafeArchiveError(
                    [entry_error(entry.name, "holds more data than its header declares")]
                )
            budget.take(len(chunk))
            out.write(chunk)
    if written != entry.size:
        raise UnsafeArchiveError(
            [entry_error(entry.name, "holds less data than its header declares")]
        )


def _read_chunks(reader: _Reader, entry: Entry) -> Iterator[bytes]:
    """Yield a member's data; any failure to read the archive is an UnsafeArchiveError."""
    try:
        with reader.open(entry) as source:
            while chunk := source.read(CHUNK_BYTES):
                yield chunk
    except _READ_ERRORS as exc:
        raise UnsafeArchiveError([entry_error(entry.name, f"corrupt data ({exc})")]) from exc


# --- zip -------------------------------------------------------------------------------


class _ZipReader:
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self._archive = archive
        self._infos = archive.infolist()

    def entries(self) -> list[Entry]:
        return [_zip_entry(index, info) for index, info in enumerate(self._infos)]

    def open(self, entry: Entry) -> AbstractContextManager[IO[bytes]]:
        return self._archive.open(self._infos[entry.index])


def _zip_entry(index: int, info: zipfile.ZipInfo) -> Entry:
    file_type = stat.S_IFMT(info.external_attr >> 16)
    kind = _ZIP_KINDS.get(file_type, EntryKind.OTHER)
    if kind is EntryKind.FILE and info.is_dir():
        kind = EntryKind.DIR
    problem = None
    if info.flag_bits & 0x1:
        problem = "encrypted entries are not supported"
    elif info.compress_type not in _ZIP_METHODS:
        problem = f"compression method {info.compress_type} is not supported"
    size = 0 if kind is EntryKind.DIR else info.file_size
    return Entry(info.orig_filename, kind, size, index, info.compress_size, problem)


@contextmanager
def _open_zip(path: Path, size: int, limits: IntakeLimits) -> Iterator[_ZipReader]:
    try:
        with path.open("rb") as stream:
            _check_zip_bounds(stream, size, limits)
        archive = zipfile.ZipFile(path)
    except (
        ZipDirectoryError,
        zipfile.BadZipFile,
        NotImplementedError,
        ValueError,
        EOFError,
    ) as exc:
        raise UnsafeArchiveError([f"archive is corrupt: {exc}"]) from exc
    with archive:
        with path.open("rb") as stream:
            start = locate_directory(stream, size).start
            problems = local_header_problems(stream, archive.infolist(), start)
        if problems:
            raise UnsafeArchiveError(summarise(problems))
        yield _ZipReader(archive)


def _check_zip_bounds(stream: BinaryIO, size: int, limits: IntakeLimits) -> None:
    """Entry count from the central directory; nothing before the members or after the end."""
    location = locate_directory(stream, size)
    if location.end != size:
        raise UnsafeArchiveError(
            [f"archive has {size - location.end} unexpected bytes after its end record"]
        )
    if location.declared_start != location.start:
        raise UnsafeArchiveError(
            ["archive's central directory is not where its end record says (bytes prepended?)"]
        )
    count = count_entries(stream, size, limits.max_entries)
    if count > limits.max_entries:
        raise UnsafeArchiveError([f"archive has more than {limits.max_entries} entries"])


# --- tar -------------------------------------------------------------------------------


class _TarReader:
    def __init__(self, archive: tarfile.TarFile, members: Sequence[tarfile.TarInfo]) -> None:
        self._archive = archive
        self._members = members

    def entries(self) -> list[Entry]:
        return [_tar_entry(index, member) for index, member in enumerate(self._members)]

    def open(self, entry: Entry) -> AbstractContextManager[IO[bytes]]:
        source = self._archive.extractfile(self._members[entry.index])
        if source is None:
            raise UnsafeArchiveError([entry_error(entry.name, "has no data")])
        return source


def _tar_entry(index: int, member: tarfile.TarInfo) -> Entry:
    kind = EntryKind.OTHER
    for test, candidate in _TAR_KINDS:
        if test(member):
            kind = candidate
            break
    problem = None
    if member.issparse():
        problem = "sparse files are not supported"
    elif "size" in member.pax_headers:
        problem = "a PAX header overrides the member's size (readers disagree on its data)"
    size = member.size if kind is EntryKind.FILE else 0
    return Entry(member.name, kind, size, index, None, problem)


@contextmanager
def _open_tar(stream: IO[bytes], limits: IntakeLimits) -> Iterator[_TarReader]:
    """Read up to ``max_entries + 1`` member headers; the rest are never parsed."""
    with _tar_file(stream) as archive:
        members: list[tarfile.TarInfo] = []
        try:
            while len(members) <= limits.max_entries and (member := archive.next()):
                members.append(member)
        except (tarfile.TarError, EOFError, UnicodeError) as exc:
            raise UnsafeArchiveError([f"archive is corrupt: {exc}"]) from exc
        if len(members) <= limits.max_entries:
            _check_tar_end(stream, archive.offset)
        yield _TarReader(archive, members)


def _check_tar_end(stream: IO[bytes], offset: int) -> None:
    """Everything after the last member tarfile read must be zero padding.

    tarfile ends the archive quietly at a corrupt header; GNU tar reports it and reads on,
    so members hidden behind one would exist for one tool and not for the other.
    """
    stream.seek(offset)
    while chunk := stream.read(CHUNK_BYTES):
        if chunk.count(0) != len(chunk):
            raise UnsafeArchiveError(
                ["archive holds data after its last readable member (a corrupt header?)"]
            )


def _tar_file(stream: IO[bytes]) -> tarfile.TarFile:
    """Open an uncompressed tar stream; anything else is not an archive we accept."""
    try:
        return tarfile.open(fileobj=stream, mode="r:")
    except tarfile.TarError as exc:
        raise UnsafeArchiveError([NOT_AN_ARCHIVE]) from exc


def _gunzip_bounded(path: Path, out: IO[bytes], size: int, limits: IntakeLimits) -> None:
    """Decompress a gzip file into ``out``, stopping as soon as it passes a byte bound."""
    bound = (
        limits.max_unpacked_bytes
        + (limits.max_entries + 1) * _TAR_OVERHEAD_PER_ENTRY
        + _TAR_OVERHEAD_FIXED
    )
    total = 0
    with gzip.open(path, "rb") as source:
        while chunk := _read_gzip_chunk(source):
            total += len(chunk)
            if total > bound:
                raise UnsafeArchiveError(
                    [f"gzip stream unpacks to more than the limit of {bound} bytes"]
                )
            # The ratio only grows as output grows: stop as soon as it is too high.
            problem = ratio_problem(total, size, limits)
            if problem:
                raise UnsafeArchiveError([f"gzip stream: {problem}"])
            out.write(chunk)


def _read_gzip_chunk(source: gzip.GzipFile) -> bytes:
    """Read at most CHUNK_BYTES of decompressed data; corrupt input is an UnsafeArchiveError."""
    try:
        return source.read(CHUNK_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise UnsafeArchiveError([f"archive is corrupt: {exc}"]) from exc
