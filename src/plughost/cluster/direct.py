"""Calls from a worker that does not lead straight to this home's local replicas.

With ``plughost serve --workers N`` one worker runs the controller and starts the replicas;
the others would otherwise forward every call to it over HTTP, which puts all routing back
on one event loop (the bottleneck ``--workers`` exists to remove). Each replica is recorded
in the home's registry (:mod:`plughost.backends.local.registry`) with its socket and its
secret, and serves several authenticated connections at once (:mod:`plughost.replica.auth`),
so every worker connects to every replica of a release itself and calls it directly.

Connections are made in the background, from a read of the registry at most every
:data:`RESCAN_S` (sooner when a release has none), and one that closes is dropped: a replica
the leader retired or that died leaves with its connection. A release with no connected
replica yet (starting, scaled to zero) answers ``None`` and the caller forwards to the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from pathlib import Path

from plughost.backends import client
from plughost.backends.channel import ChannelClosed, ReplicaChannel
from plughost.backends.errors import ReplicaCallTimeout, ReplicaUnavailable
from plughost.backends.local.registry import ReplicaRecord, ReplicaRegistry
from plughost.backends.stream import CallStream

log = logging.getLogger("plughost.direct")

RESCAN_S = 1.0  # read the registry again at most this often
CONNECT_TIMEOUT_S = 5.0


class DirectReplica:
    """One authenticated connection to a replica another process of this home started."""

    def __init__(self, record: ReplicaRecord, call_timeout_s: float) -> None:
        self.record = record
        self.call_timeout_s = call_timeout_s
        self.channel: ReplicaChannel | None = None
        self.closed = False

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, channel = await loop.create_unix_connection(
                lambda: ReplicaChannel(self._timed_out, self._lost), self.record.socket_path
            )
            self.channel = channel
            proved = await client.hello(channel.request, self.record.secret, CONNECT_TIMEOUT_S)
        if not proved:
            self.close()
            raise ConnectionError("the replica did not prove its secret")

    def _timed_out(self, timeout_s: float, is_call: bool) -> BaseException:
        # the leader's own connection decides whether a hung replica is killed
        return ReplicaCallTimeout(f"no reply within {timeout_s:g} s")

    def _lost(self, _reason: str) -> None:
        self.closed = True

    async def call(self, body: bytes, deadline_s: float | None = None) -> bytes | CallStream:
        if self.channel is None or self.closed:
            raise ReplicaUnavailable("not connected")
        try:
            return await client.call(
                self.channel.request, body, self.call_timeout_s, deadline_s=deadline_s
            )
        except ChannelClosed as exc:
            self.closed = True
            raise ReplicaUnavailable(str(exc)) from None

    def close(self) -> None:
        self.closed = True
        if self.channel is not None:
            self.channel.close()


class DirectReplicas:
    """Every replica of this home, by release, connected on demand."""

    def __init__(self, replicas_dir: Path, call_timeout_s: float) -> None:
        self.registry = ReplicaRegistry(replicas_dir)
        self.call_timeout_s = call_timeout_s
        self._by_release: dict[int, list[DirectReplica]] = {}
        self._connecting: set[str] = set()
        self._rr = itertools.count()
        self._scanned = 0.0
        self._scan: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def call(
        self, release_id: int, body: bytes, deadline_s: float | None = None
    ) -> bytes | CallStream | None:
        """The reply of one of the release's replicas, or None when none is connected (the
        caller forwards then). A replica that goes away under a call is tried once more on
        another; a plugin error or a timeout is the caller's."""
        self._maybe_rescan()
        for _ in range(2):
            live = [r for r in self._by_release.get(release_id, ()) if not r.closed]
            if not live:
                self._maybe_rescan(soon=True)
                return None
            replica = live[next(self._rr) % len(live)]
            try:
                return await replica.call(body, deadline_s)
            except ReplicaCallTimeout:
                raise
            except ReplicaUnavailable:
                if not replica.closed:
                    raise
                self._forget(replica)
        return None

    def _forget(self, replica: DirectReplica) -> None:
        group = self._by_release.get(replica.record.release_id, [])
        if replica in group:
            group.remove(replica)

    def _maybe_rescan(self, soon: bool = False) -> None:
        wait = 0.2 if soon else RESCAN_S
        if time.monotonic() - self._scanned < wait:
            return
        if self._scan is not None and not self._scan.done():
            return
        self._scanned = time.monotonic()
        self._scan = asyncio.create_task(self._rescan(), name="plughost-direct-scan")

    async def _rescan(self) -> None:
        try:
            records = await asyncio.to_thread(self.registry.load)
        except OSError:
            log.debug("cannot read the replica registry", exc_info=True)
            return
        present = {r.replica_id for r in records}
        for group in self._by_release.values():
            for replica in [r for r in group if r.closed or r.record.replica_id not in present]:
                replica.close()
                group.remove(replica)
        known = {r.record.replica_id for g in self._by_release.values() for r in g}
        for record in records:
            if record.replica_id in known or record.replica_id in self._connecting:
                continue
            self._connecting.add(record.replica_id)
            task = asyncio.create_task(self._connect(record))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect(self, record: ReplicaRecord) -> None:
        replica = DirectReplica(record, self.call_timeout_s)
        try:
            await replica.connect()
        except (OSError, TimeoutError, ConnectionError, ChannelClosed, ReplicaUnavailable):
            replica.close()  # not up yet, or gone: the next scan tries again
        else:
            self._by_release.setdefault(record.release_id, []).append(replica)
        finally:
            self._connecting.discard(record.replica_id)

    async def close(self) -> None:
        for task in [self._scan, *self._pending]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        for group in self._by_release.values():
            for replica in group:
                replica.close()
        self._by_release.clear()
