"""A release as every layer sees it: an immutable copy of one row of the releases table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from plughost.domain.states import Status


@dataclass(frozen=True)
class ReleaseView:
    """A detached, immutable copy of a release row."""

    id: int
    namespace_id: str
    plugin_pk: int
    plugin_id: str
    name: str
    version: str
    status: Status
    message: str | None
    error: str | None
    queued_at: datetime
    started_at: datetime | None
    deployed_at: datetime | None
    finished_at: datetime | None
    # the deploy's options (plughost.domain.rollout); None: the defaults
    rollout: dict[str, Any] | None = field(default=None, compare=False, hash=False)
