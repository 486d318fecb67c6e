"""Keeping one server's memory in step with writes other servers make to the same database.

:class:`ChangeFeed` listens on PostgreSQL channel ``plughost_changes`` on a dedicated
psycopg connection (the triggers of migration 0006 notify every release event, alias,
API key and lease change) and hands what changed, batched, to one ``apply`` coroutine. Every
``catch_up_s`` it also hands over a full pass, so a notification lost while the listening
connection was down (notifications are not queued for a disconnected listener) is healed
within that time. :func:`follower_routes` builds a follower's route table from the table's
deployed releases and aliases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from plughost.backends.base import ReplicaGroup
from plughost.dataplane.routes import Route
from plughost.domain.ids import deployment_name_for
from plughost.domain.release import ReleaseView

log = logging.getLogger("plughost.sync")

CHANNEL = "plughost_changes"


@dataclass
class Changes:
    """What changed since the last apply; ``full``: check everything (catch-up)."""

    releases: set[int] = field(default_factory=set)
    plugins: dict[int, bool] = field(default_factory=dict)  # plugin pk -> deleted (else disabled)
    aliases: bool = False
    keys: bool = False
    lease: bool = False
    full: bool = False

    def add(self, payload: str) -> None:
        kind, rest = payload[:1], payload[1:]
        if kind == "r" and rest.isdigit():
            self.releases.add(int(rest))
        elif kind in ("d", "x") and rest.isdigit():
            pk = int(rest)
            self.plugins[pk] = self.plugins.get(pk, False) or kind == "d"
        elif kind == "a":
            self.aliases = True
        elif kind == "k":
            self.keys = True
        elif kind == "l":
            self.lease = True
        else:
            self.full = True

    def __bool__(self) -> bool:
        return (
            bool(self.releases)
            or bool(self.plugins)
            or self.aliases
            or self.keys
            or self.lease
            or self.full
        )


class ChangeFeed:
    """LISTEN plus periodic catch-up, feeding ``apply(changes)`` one batch at a time."""

    def __init__(
        self,
        dsn: str,
        apply: Callable[[Changes], Awaitable[None]],
        catch_up_s: float = 2.0,
    ) -> None:
        self.dsn = dsn
        self.apply = apply
        self.catch_up_s = catch_up_s
        self._pending = Changes()
        self._event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._listen(), name="plughost-listen"),
            asyncio.create_task(self._applier(), name="plughost-sync"),
        ]

    async def stop(self) -> None:
        # the flag ends a loop whose cancellation was lost: Python 3.11's wait_for and some
        # drivers swallow a cancel that lands as the awaited thing completes (a notification
        # arriving as the lease is released, for one)
        self._stopping = True
        self._event.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task

    def _note(self, payload: str) -> None:
        self._pending.add(payload)
        self._event.set()

    async def _listen(self) -> None:
        import psycopg

        while not self._stopping:
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self._note("*")  # anything missed while not listening
                    self._note("k")  # (a key revoked meanwhile: drop the key cache too)
                    async for note in conn.notifies():
                        if self._stopping:
                            break
                        self._note(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # reconnect; the catch-up covers the gap
                log.warning("change notifications interrupted; reconnecting", exc_info=True)
            self.listening.clear()
            await asyncio.sleep(1.0)

    async def _applier(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.catch_up_s):
                    await self._event.wait()
            if self._stopping:
                return
            self._event.clear()
            changes, self._pending = self._pending, Changes()
            if not changes:
                changes.full = True  # the periodic catch-up
            try:
                await self.apply(changes)
            except asyncio.CancelledError:
                raise
            except Exception:  # the next pass heals it
                log.exception("applying changes from the database failed")


def follower_routes(
    deployed: Iterable[ReleaseView],
    aliases: dict[tuple[str, str], int],
    group_for: Callable[[ReleaseView], ReplicaGroup],
) -> dict[tuple[str, str], Route]:
    """The route table of a server that runs no replicas: deployment name and plugin id of
    every deployed release (the newest of a plugin id wins), and each alias."""
    by_id: dict[int, Route] = {}
    table: dict[tuple[str, str], Route] = {}
    for rel in sorted(deployed, key=lambda r: r.id):
        route = Route(
            rel.namespace_id, rel.plugin_id, rel.name, rel.version, rel.id, group_for(rel)
        )
        by_id[rel.id] = route
        table[(rel.namespace_id, deployment_name_for(rel.plugin_id))] = route
        table[(rel.namespace_id, rel.plugin_id)] = route
    for (namespace_id, name), release_id in aliases.items():
        target = by_id.get(release_id)
        if target is not None:
            table[(namespace_id, name)] = target
    return table
