"""Unprivileged user ids for sandboxed processes: one per live replica.

A distinct uid per replica makes RLIMIT_NPROC a per-replica bound (the kernel counts processes
per real uid) and keeps replicas from signalling or reading each other's processes. Ids come
from a configured range; each server starts at a random offset in it so two servers on one
machine rarely hand out the same id. Thread-safe (manifest reads run in worker threads).
"""

from __future__ import annotations

import secrets
import threading


class UidPool:
    """Leases ids from ``[base, base + size)``; the id ``base + size`` is kept for the manifest
    reader, whose short-lived processes share it."""

    def __init__(self, base: int, size: int) -> None:
        if base <= 0 or size <= 0:
            raise ValueError("the sandbox uid range must be positive")
        self.base = base
        self.size = size
        self._next = secrets.randbelow(size)
        self._leased: set[int] = set()
        self._lock = threading.Lock()

    @property
    def manifest_uid(self) -> int:
        """The id the manifest reader runs as."""
        return self.base + self.size

    def acquire(self) -> int:
        """A free id; RuntimeError when every id of the range is leased."""
        with self._lock:
            for _ in range(self.size):
                uid = self.base + self._next
                self._next = (self._next + 1) % self.size
                if uid not in self._leased:
                    self._leased.add(uid)
                    return uid
        raise RuntimeError(f"all {self.size} sandbox uids are in use")

    def claim(self, uid: int) -> None:
        """Lease a given id (a process that already runs under it, e.g. an adopted replica)."""
        with self._lock:
            self._leased.add(uid)

    def release(self, uid: int | None) -> None:
        """Return an id to the pool (unknown ids and None are ignored)."""
        if uid is None:
            return
        with self._lock:
            self._leased.discard(uid)

    @property
    def leased(self) -> int:
        """How many ids are out."""
        with self._lock:
            return len(self._leased)
