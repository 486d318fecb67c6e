"""Batch job statuses and the one transition table every batch status change goes through."""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.QUEUED: frozenset({BatchStatus.RUNNING, BatchStatus.FAILED, BatchStatus.CANCELLED}),
    # running -> queued: a server restart puts an interrupted job back in line
    BatchStatus.RUNNING: frozenset(
        {BatchStatus.QUEUED, BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED}
    ),
    BatchStatus.COMPLETED: frozenset(),
    BatchStatus.FAILED: frozenset(),
    BatchStatus.CANCELLED: frozenset(),
}

BATCH_ACTIVE = frozenset({BatchStatus.QUEUED, BatchStatus.RUNNING})
ON_ERROR_MODES = ("fail", "skip")


def can_move_batch(src: BatchStatus, dst: BatchStatus) -> bool:
    """Batch statuses only move along BATCH_TRANSITIONS."""
    return dst in BATCH_TRANSITIONS[src]
