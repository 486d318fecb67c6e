"""Deployment statuses and the one transition table every status change goes through."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DEPLOYED = "deployed"
    FAILED = "failed"
    NOT_DEPLOYED = "not_deployed"
    # internal: a deployed release replaced by a newer release of the same plugin id
    SUPERSEDED = "superseded"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.PENDING, Status.NOT_DEPLOYED}),
    Status.PENDING: frozenset({Status.IN_PROGRESS, Status.FAILED, Status.NOT_DEPLOYED}),
    Status.IN_PROGRESS: frozenset({Status.DEPLOYED, Status.FAILED, Status.NOT_DEPLOYED}),
    Status.DEPLOYED: frozenset({Status.SUPERSEDED, Status.NOT_DEPLOYED, Status.FAILED}),
    Status.FAILED: frozenset(),
    Status.NOT_DEPLOYED: frozenset(),
    Status.SUPERSEDED: frozenset(),
}

ACTIVE = frozenset({Status.QUEUED, Status.PENDING, Status.IN_PROGRESS})
ROLLING = frozenset({Status.PENDING, Status.IN_PROGRESS})


def can_move(src: Status, dst: Status) -> bool:
    """Statuses only move forward along TRANSITIONS."""
    return dst in TRANSITIONS[src]


def wire_status(status: Status) -> str:
    """What the status endpoint shows for a release's own status."""
    return Status.NOT_DEPLOYED.value if status is Status.SUPERSEDED else status.value
