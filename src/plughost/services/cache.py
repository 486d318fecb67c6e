"""Reads that memory answers first: the release board and the plugin lookups fill from the
database on a miss, except on the event loop, where a miss must go to a thread instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class NotCached(Exception):
    """Raised inside a memory-only read when something must come from the database."""


def memory_or_load(hit: T | None, load: Callable[[], T], cached_only: bool) -> T:
    """``hit`` when memory holds it, else ``load()`` (which reads the database and fills
    memory), or NotCached when only memory may be read."""
    if hit is not None:
        return hit
    if cached_only:
        raise NotCached
    return load()
