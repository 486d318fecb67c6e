"""Replica output on disk: one folder per release, two JSON-lines files, a cap per release.

Lines are appended by :meth:`LogStore.append` on the event loop (a deque append, no I/O) and
written by one writer thread. Each release keeps ``0.jsonl`` (current) and ``1.jsonl``
(previous): when the current file passes half the cap it becomes the previous one, the old
previous one is deleted, and the new file starts with a drop marker. A release's output thus
never takes more than its cap on disk; the whole folder is kept under ``total_cap_bytes`` by
deleting the oldest releases' logs. The queue of unwritten lines is bounded too: past it, lines
are counted and dropped, never waited for.

Line times are unique and increasing across the store (a clash moves a line on by 1 µs), so a
time is a cursor: "the lines after T" never skips nor repeats one.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

SERVER_REPLICA = "plughost"  # the `replica` of lines the server writes itself


@dataclass(frozen=True, slots=True)
class LogLine:
    time: float  # seconds since the epoch, unique within the store
    release_id: int
    replica: str
    stream: str  # stdout | stderr | log
    line: str
    dropped: bool = False  # a marker: output before it was dropped by a cap


@dataclass(frozen=True)
class LogLimits:
    release_cap_bytes: int = 8 * 1024 * 1024
    total_cap_bytes: int = 1024 * 1024 * 1024
    pending_cap_bytes: int = 16 * 1024 * 1024
    flush_interval_s: float = 0.2


class LogStore:
    """Per-release log files under ``root`` with caps; see the module docstring."""

    def __init__(
        self, root: Path, limits: LogLimits | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = root
        self.limits = limits or LogLimits()
        self._clock = clock
        self._last_time = 0.0
        self._pending: deque[LogLine] = deque()
        self._queued_bytes = 0  # written by the appending thread only
        self._written_bytes = 0  # written by the writer thread only
        self._lost = 0  # lines refused because the queue was full (appending thread)
        self._files: dict[int, _ReleaseFile] = {}
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- appending (event loop) -------------------------------------------------------------
    def append(self, release_id: int, replica: str, stream: str, line: str,
               dropped: bool = False) -> LogLine | None:
        """Queue one line for writing; None (and counted) when the write queue is full."""
        size = len(line) + 64
        if self._queued_bytes - self._written_bytes + size > self.limits.pending_cap_bytes:
            self._lost += 1
            return None
        now = round(self._clock(), 6)  # whole microseconds: the wire's precision
        if now <= self._last_time:
            now = round(self._last_time + 1e-6, 6)
        self._last_time = now
        if self._lost:
            lost, self._lost = self._lost, 0
            self._pending.append(LogLine(now, release_id, SERVER_REPLICA, "log",
                                         f"[plughost] {lost} lines dropped: output arrived faster "
                                         "than it could be written", True))
            now = round(now + 1e-6, 6)
            self._last_time = now
        entry = LogLine(now, release_id, replica, stream, line, dropped)
        self._pending.append(entry)
        self._queued_bytes += size
        return entry

    # -- the writer thread ------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(target=self._run, name="plughost-logs", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Write what is queued and stop the writer thread."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.limits.flush_interval_s)
            self._wake.clear()
            with contextlib.suppress(OSError):
                self.flush()

    def flush(self) -> None:
        """Write every queued line (called by the writer thread, and by readers first)."""
        with self._write_lock:
            touched: set[int] = set()
            while self._pending:
                entry = self._pending.popleft()
                self._written_bytes += len(entry.line) + 64
                self._file(entry.release_id).write(_encode(entry))
                touched.add(entry.release_id)
            for release_id in touched:
                self._files[release_id].flush()

    def _file(self, release_id: int) -> _ReleaseFile:
        handle = self._files.get(release_id)
        if handle is None:
            if len(self._files) > 256:  # keep few descriptors open
                for old in list(self._files.values())[:128]:
                    old.close()
                    del self._files[old.release_id]
            handle = _ReleaseFile(
                self.root, release_id, self.limits.release_cap_bytes, self._rotated
            )
            self._files[release_id] = handle
        return handle

    def _rotated(self) -> None:
        """Keep the whole folder under its cap: delete the oldest releases' logs."""
        folders = sorted(
            (p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("r")),
            key=lambda p: _release_of(p) or 0,
        )
        sizes = {p: sum(f.stat().st_size for f in p.glob("*.jsonl")) for p in folders}
        total = sum(sizes.values())
        for folder in folders[:-1]:
            if total <= self.limits.total_cap_bytes:
                break
            release_id = _release_of(folder)
            if release_id is not None and release_id in self._files:
                self._files.pop(release_id).close()
            shutil.rmtree(folder, ignore_errors=True)
            total -= sizes[folder]

    # -- reading ----------------------------------------------------------------------------
    def read(self, release_ids: Iterable[int]) -> list[LogLine]:
        """Every kept line of these releases, oldest first (queued lines written first)."""
        self.flush()
        lines: list[LogLine] = []
        for release_id in release_ids:
            folder = self.root / f"r{release_id}"
            for name in ("1.jsonl", "0.jsonl"):
                lines.extend(_read_file(folder / name, release_id))
        lines.sort(key=lambda entry: entry.time)
        return lines

    def last_write(self, release_id: int) -> float:
        """When the release's current file was last written (0.0 if it has none); queued
        lines count as written now."""
        if any(e.release_id == release_id for e in list(self._pending)):
            return time.time()
        try:
            return (self.root / f"r{release_id}" / "0.jsonl").stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def tail(self, release_id: int, count: int) -> list[LogLine]:
        """The last ``count`` lines of one release."""
        return self.read([release_id])[-count:] if count > 0 else []


class _ReleaseFile:
    """The open current file of one release and its size; rotates at half the release's
    cap (``cap_bytes``), then calls ``rotated()`` (the store keeps its whole folder capped)."""

    def __init__(
        self, root: Path, release_id: int, cap_bytes: int, rotated: Callable[[], None]
    ) -> None:
        self.cap_bytes = cap_bytes
        self.rotated = rotated
        self.release_id = release_id
        self.folder = root / f"r{release_id}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.current = self.folder / "0.jsonl"
        self.handle = open(self.current, "ab")  # noqa: SIM115 - kept open between writes
        self.size = self.handle.tell()
        self.dropped_bytes = 0

    def write(self, data: bytes) -> None:
        if self.size + len(data) > self.cap_bytes // 2 and self.size:
            self._rotate()
        self.handle.write(data)
        self.size += len(data)

    def _rotate(self) -> None:
        self.handle.close()
        previous = self.folder / "1.jsonl"
        if previous.exists():
            self.dropped_bytes += previous.stat().st_size
        self.current.replace(previous)
        self.handle = open(self.current, "ab")  # noqa: SIM115
        self.size = 0
        if self.dropped_bytes:
            cap_mib = self.cap_bytes / (1024 * 1024)
            marker = LogLine(
                round(_read_first_time(previous) - 1e-6, 6), self.release_id, SERVER_REPLICA, "log",
                f"[plughost] log truncated: {self.dropped_bytes} bytes of older output dropped "
                f"(a release keeps at most {cap_mib:g} MiB)", True)
            data = _encode(marker)
            self.handle.write(data)
            self.size += len(data)
        self.rotated()

    def flush(self) -> None:
        with contextlib.suppress(ValueError):
            self.handle.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()


def _encode(entry: LogLine) -> bytes:
    record: dict[str, object] = {"t": entry.time, "r": entry.replica, "s": entry.stream,
                                 "l": entry.line}
    if entry.dropped:
        record["d"] = 1
    return orjson.dumps(record) + b"\n"


def _read_file(path: Path, release_id: int) -> list[LogLine]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines: list[LogLine] = []
    for raw in data.splitlines():
        try:
            rec = orjson.loads(raw)
            lines.append(LogLine(float(rec["t"]), release_id, str(rec["r"]), str(rec["s"]),
                                 str(rec["l"]), bool(rec.get("d"))))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a torn last line after a crash
    return lines


def _read_first_time(path: Path) -> float:
    """The time of the first line of ``path`` (the marker sorts just before it)."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline()
        return float(orjson.loads(first)["t"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return time.time()


def _release_of(folder: Path) -> int | None:
    try:
        return int(folder.name[1:])
    except ValueError:
        return None
