"""The server's side of the replica directory (:mod:`.ray_directory`): its copy of the
listing, kept current by a long poll, and the direct channels (:class:`.ray_direct.DirectSet`)
each application's listing feeds.

Every Serve replica registers its worker in the directory actor once; the server follows the
listing, connects to new workers and drops gone ones, and takes out of the listing what it
knows is gone (a replica it dropped, a dead node's replicas).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from plughost.backends.channel import ContainerHandler
from plughost.backends.ray.direct import DirectSet
from plughost.backends.ray.session import ServeSession

log = logging.getLogger("plughost.backend.ray")

DIRECTORY_POLL_S = 10.0  # long-poll window of the replica directory

Listing = dict[str, dict[str, dict[str, Any]]]  # app -> replica id -> worker info
Blocking = Callable[..., Awaitable[Any]]


class ReplicaListing:
    """The directory's listing as last read, and the direct channels it feeds, by app.

    ``directory`` is the directory actor's handle, set once the server is connected to Ray;
    until then nothing is read and nothing is unregistered."""

    def __init__(self, session: ServeSession, call_timeout_s: float) -> None:
        self.session = session
        self.call_timeout_s = call_timeout_s
        self.directory: Any = None
        self.listing: Listing = {}
        self._direct: dict[str, DirectSet] = {}
        self._version = -1

    def direct_set(self, app: str, container: ContainerHandler | None = None) -> DirectSet:
        """The direct channels of ``app`` (created on first use, fed by the directory);
        ``container`` answers its workers' container calls (kept from the first given)."""
        direct = self._direct.get(app)
        if direct is not None and direct.container is None:
            direct.container = container
        if direct is None:
            direct = DirectSet(app, self.session.node_id, self.call_timeout_s, container)
            direct.on_gone = lambda rid: self.unregister(app, rid)
            self._direct[app] = direct
            direct.update(self.listing.get(app, {}))
        return direct

    def unregister(self, app: str, replica_id: str) -> None:
        """Take a replica out of the directory (no wait)."""
        if self.directory is not None:
            with contextlib.suppress(Exception):
                self.directory.unregister.remote(app, replica_id)

    def drop(self, app: str) -> None:
        """Close the direct channels of an application that is gone and forget its entries."""
        direct = self._direct.pop(app, None)
        if direct is not None:
            direct.close()
        if self.directory is not None:
            with contextlib.suppress(Exception):
                self.directory.forget.remote(app)

    def close(self) -> None:
        """Close every direct channel (the server is shutting down)."""
        for direct in self._direct.values():
            direct.close()

    async def listen(self, pause_s: Callable[[], float]) -> None:
        """Follow the directory: new workers are connected, gone ones dropped. After a failed
        read, waits ``pause_s()`` seconds before the next. Runs until cancelled."""
        while True:
            try:
                ref = self.directory.changes.remote(self._version, DIRECTORY_POLL_S)
                version, listing = await ref
                self._version = version
                self.listing = listing
                for app, direct in self._direct.items():
                    direct.update(listing.get(app, {}))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reading the replica directory failed", exc_info=True)
                await asyncio.sleep(pause_s())

    async def forget_dead_nodes(self, run: Blocking) -> None:
        """Drop the directory entries of replicas on nodes Ray reports dead (``run``: how a
        blocking Ray call is made). A replica unregisters itself when it stops, and a dropped
        connection unregisters it too; a node that died without closing its connections
        (power, network) does neither."""
        listed = {
            (app, rid, str(info.get("node_id", "")))
            for app, replicas in self.listing.items()
            for rid, info in replicas.items()
        }
        if not listed:
            return
        alive = await run(self.session.alive_nodes)
        for app, rid, node in listed:
            if node and node not in alive:
                log.warning(
                    "replica %s of %s was on dead node %s; dropping it", rid, app, node[:12]
                )
                self.unregister(app, rid)

    def sandbox_report(self) -> dict[str, Any]:
        """The sandbox layers of each node running this server's replicas (``/healthz``)."""
        nodes: dict[str, dict[str, Any]] = {}
        for replicas in self.listing.values():
            for info in replicas.values():
                node = str(info.get("node_id", ""))[:12] or "?"
                nodes[node] = {
                    "host": info.get("host"),
                    "mode": info.get("sandbox_mode"),
                    "layers": info.get("layers", {}),
                    "missing": info.get("missing_layers", []),
                    "memory_limit": info.get("memory_limit"),  # cgroup-v1/-v2 or rlimit
                }
        return nodes
