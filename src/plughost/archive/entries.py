"""Format-neutral view of archive members and the checks made before anything is written.

Readers (zip, tar) turn their members into :class:`Entry` objects; :func:`check_entries`
then refuses the whole archive if any entry is unsafe, collecting every problem first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from plughost.archive.errors import UnsafeArchiveError
from plughost.archive.limits import RATIO_THRESHOLD_BYTES, IntakeLimits

MAX_REPORTED_ERRORS = 50
"""More problems than this are summarised in one trailing error."""

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_JUNK_DIRS = frozenset({"__MACOSX"})
_JUNK_FILES = frozenset({".DS_Store", "Thumbs.db"})


class EntryKind(StrEnum):
    """What an archive member is. Only FILE and DIR are ever unpacked."""

    FILE = "file"
    DIR = "directory"
    SYMLINK = "symbolic link"
    HARDLINK = "hard link"
    DEVICE = "device file"
    FIFO = "FIFO"
    SOCKET = "socket"
    OTHER = "special entry"


@dataclass(frozen=True)
class Entry:
    """One archive member as declared by its header.

    ``size`` is the declared unpacked size; ``compressed_size`` is set for zip members only.
    ``problem`` is a reader-specific refusal (encryption, unsupported method), if any.
    ``index`` locates the member again in its reader.
    """

    name: str
    kind: EntryKind
    size: int
    index: int
    compressed_size: int | None = None
    problem: str | None = None


def is_junk_part(part: str) -> bool:
    """True for operating-system litter that is never unpacked (``__MACOSX``, ``._x``...)."""
    return part in _JUNK_DIRS or part in _JUNK_FILES or part.startswith("._")


def split_name(name: str) -> tuple[str, ...] | str:
    """Return the path components of a member name, or the reason the name is refused.

    ``.`` components and repeated or trailing slashes are dropped, so ``./a//b/`` is
    ``("a", "b")``; an empty tuple means the archive root itself.
    """
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "name contains a NUL or control character"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    if "\\" in name:
        return "backslash in path is not allowed"
    if name.startswith("/"):
        return "absolute path is not allowed"
    if _DRIVE_LETTER.match(name):
        return "drive letter in path is not allowed"
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        return "'..' path component is not allowed"
    return parts


def is_junk(parts: tuple[str, ...]) -> bool:
    """True when a member lies in, or is, operating-system litter."""
    return any(is_junk_part(part) for part in parts)


def check_entries(entries: Sequence[Entry], limits: IntakeLimits) -> list[tuple[str, ...]]:
    """Validate every entry; return the path parts of each entry, in order.

    Raises UnsafeArchiveError listing every unsafe entry, duplicate, and exceeded limit.
    """
    errors: list[str] = []
    all_parts: list[tuple[str, ...]] = []
    if len(entries) > limits.max_entries:
        errors.append(f"archive has more than {limits.max_entries} entries")
    for entry in entries:
        parts = split_name(entry.name)
        if isinstance(parts, str):
            errors.append(entry_error(entry.name, parts))
            parts = ()
        else:
            errors.extend(_entry_problems(entry, parts, limits))
        all_parts.append(parts)
    errors.extend(_clashes(entries, all_parts))
    total = sum(entry.size for entry in entries if entry.kind is EntryKind.FILE)
    if total > limits.max_unpacked_bytes:
        errors.append(
            f"archive unpacks to {total} bytes, above the limit of "
            f"{limits.max_unpacked_bytes} bytes"
        )
    if errors:
        raise UnsafeArchiveError(summarise(errors))
    return all_parts


def entry_error(name: str, reason: str) -> str:
    """Format a problem with one member: ``archive entry '<name>': <reason>``."""
    return f"archive entry {name!r}: {reason}"


def ratio_problem(size: int, compressed: int, limits: IntakeLimits) -> str | None:
    """Return why ``size``/``compressed`` is a decompression bomb, or None if it is fine."""
    if size <= RATIO_THRESHOLD_BYTES:
        return None
    ratio = size / max(compressed, 1)
    if ratio <= limits.max_compression_ratio:
        return None
    return f"compression ratio {ratio:.0f} exceeds the limit of {limits.max_compression_ratio:g}"


def summarise(errors: list[str]) -> list[str]:
    """Cap a long error list, noting how many were left out."""
    if len(errors) <= MAX_REPORTED_ERRORS:
        return errors
    hidden = len(errors) - MAX_REPORTED_ERRORS
    return [*errors[:MAX_REPORTED_ERRORS], f"... and {hidden} more problems"]


def _entry_problems(entry: Entry, parts: tuple[str, ...], limits: IntakeLimits) -> list[str]:
    problems: list[str] = []
    if entry.kind not in (EntryKind.FILE, EntryKind.DIR):
        problems.append(f"{entry.kind.value} is not allowed")
    if entry.problem:
        problems.append(entry.problem)
    if entry.kind is EntryKind.FILE and not parts:
        problems.append("file entry has no name")
    if entry.kind is EntryKind.FILE and entry.compressed_size is not None:
        ratio = ratio_problem(entry.size, entry.compressed_size, limits)
        if ratio:
            problems.append(ratio)
    return [entry_error(entry.name, problem) for problem in problems]


def _clashes(entries: Sequence[Entry], all_parts: list[tuple[str, ...]]) -> list[str]:
    """Duplicate file names, and names used both as a file and as a directory."""
    errors: list[str] = []
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    for entry, parts in zip(entries, all_parts, strict=True):
        if not parts:
            continue
        for depth in range(1, len(parts)):
            dirs.add(parts[:depth])
        if entry.kind is EntryKind.DIR:
            dirs.add(parts)
        elif parts in files:
            errors.append(entry_error(entry.name, "duplicate name"))
        else:
            files.add(parts)
    for parts in sorted(files & dirs):
        errors.append(entry_error("/".join(parts), "used both as a file and as a directory"))
    return errors
