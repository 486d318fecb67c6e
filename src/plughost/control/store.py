"""The controller's async door to the releases table.

:class:`~plughost.persistence.releases.Releases` is blocking (SQLAlchemy sessions); every
call the controller makes goes through here, on a worker thread, so the event loop that
also serves requests never waits on the database. One method per query the controller
needs, nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from plughost.domain.release import ReleaseView
from plughost.domain.states import Status
from plughost.persistence.releases import Fence, Releases


class ReleaseStore:
    """Async wrappers of the :class:`Releases` calls the controller makes."""

    def __init__(self, releases: Releases, fence: Fence | None = None) -> None:
        self.releases = releases
        # several servers on one database: the controller lease's check, run inside each
        # write below (plughost.cluster.election); None when this server is the only one
        self.fence = fence

    async def with_status(self, statuses: Collection[Status]) -> list[ReleaseView]:
        return await asyncio.to_thread(self.releases.with_status, set(statuses))

    async def of_plugin(
        self, namespace_id: str, plugin_pk: int, statuses: Collection[Status]
    ) -> list[ReleaseView]:
        return await asyncio.to_thread(
            self.releases.of_plugin, namespace_id, plugin_pk, set(statuses)
        )

    async def get(self, release_id: int) -> ReleaseView | None:
        return await asyncio.to_thread(self.releases.get, release_id)

    async def deployed_of_name(self, namespace_id: str, name: str) -> list[ReleaseView]:
        return await asyncio.to_thread(self.releases.deployed_of_name, namespace_id, name)

    async def move(
        self,
        release_id: int,
        expected: Status,
        to: Status,
        message: str | None = None,
        error: str | None = None,
        **times: Any,
    ) -> bool:
        """Compare-and-set ``expected -> to`` (with its event row); False when the release
        had moved on meanwhile."""
        return await asyncio.to_thread(
            self.releases.move, release_id, expected, to, message, error, self.fence, **times
        )

    async def note(self, release_id: int, status: Status, message: str) -> bool:
        return await asyncio.to_thread(
            self.releases.note, release_id, status, message, self.fence
        )

    async def alias(self, namespace_id: str, name: str) -> int | None:
        return await asyncio.to_thread(self.releases.alias, namespace_id, name)

    async def aliases(self) -> dict[tuple[str, str], int]:
        return await asyncio.to_thread(self.releases.aliases)

    async def set_alias(
        self, namespace_id: str, name: str, release_id: int | None, reason: str
    ) -> None:
        await asyncio.to_thread(
            self.releases.set_alias, namespace_id, name, release_id, reason, self.fence
        )
