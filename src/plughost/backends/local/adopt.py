"""Replicas that outlive the server, on the local backend.

A server started on a home where an earlier one died (SIGKILL, crash, OOM) finds that
server's replicas still running, each with a record in the registry
(:mod:`.replica_registry`). At start it sorts them:

- a replica of a release that is no longer live (undeployed, deleted, failed: the database
  says so) is stopped at once;
- one of a live release waits to be claimed: when the controller brings that release back it
  asks the backend for its replicas, and each one whose release, code hash and environment
  match and that answers the handshake with its secret is adopted, serving again without a
  restart; one that fails a check is stopped (only if its pid still has the recorded start
  time: another process is never signalled); only the missing count is started;
- one nobody claimed within :data:`CLAIM_GRACE_S` is stopped.

The registry is read at start and again whenever a group starts, so a server that takes over
the releases of another one on the same home that died adopts its replicas too.

A deliberate stop of the server stops its replicas and removes their records, unless
``PLUGHOST_KEEP_REPLICAS_ON_STOP`` is set (then they stay, for the next server to adopt). A
replica with no server connected for ``PLUGHOST_REPLICA_ORPHAN_TIMEOUT_S`` ends itself.

What a takeover or servers sharing a home's replicas can build
on: a record names the server that owns the replica (pid and start time), and a server
leaves alone every replica whose owner still runs; a replica serves several authenticated
connections at once, so a new server can connect and answer through it while the old one
still drains; the old one lets go without stopping anything through the keep-on-stop path
(:meth:`LocalBackend.shutdown`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from plughost.backends.local.registry import (
    ReplicaRecord,
    ReplicaRegistry,
    code_hash,
    is_running,
    process_start_time,
    server_running,
    signal_recorded,
)

if TYPE_CHECKING:
    from plughost.backends.base import GroupSpec
    from plughost.backends.local.launch import ReplicaSpec

log = logging.getLogger("plughost.backend.adopt")

CLAIM_GRACE_S = 120.0
STOP_GRACE_S = 5.0
STOP_POLL_S = 0.05

LiveReleases = Callable[[], set[int]]


class Adoption:
    """The registry of one server's local replicas, and the ones found from an earlier one."""

    def __init__(self, registry: ReplicaRegistry, live_releases: LiveReleases) -> None:
        self.registry = registry
        self.live_releases = live_releases
        self.found: dict[int, list[ReplicaRecord]] = {}
        self._hashes: dict[tuple[int, Path], str] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.rescan()

    def rescan(self) -> int:
        """Pick up the running replicas of servers that are gone (at start; and whenever a
        group starts, so a server that takes over a dead one's releases adopts its replicas
        too); forget the records of replicas that are gone. How many were new."""
        known = {r.replica_id for records in self.found.values() for r in records}
        new = 0
        for record in self.registry.load():
            mine = record.server_pid == os.getpid()
            if mine or record.replica_id in known or server_running(record):
                continue  # ours, or another live server's (several servers on one home)
            if is_running(record):
                self.found.setdefault(record.release_id, []).append(record)
                new += 1
            else:
                self.registry.remove(record.replica_id)
        if new:
            log.info("found %d replica(s) of a server that is gone on this home", new)
        return new

    # -- the sweep ------------------------------------------------------------------------------
    def start_sweeper(self) -> None:
        """Start the sweep of found replicas (needs the running loop; idempotent)."""
        if (self._sweeper is None or self._sweeper.done()) and self.found:
            self._sweeper = asyncio.create_task(self._sweep(), name="plughost-replica-sweep")

    async def _sweep(self) -> None:
        try:
            live = await asyncio.to_thread(self.live_releases)
        except Exception:  # the database is not reachable: keep them for the grace period
            log.exception("cannot read the live releases; found replicas wait for a claim")
        else:
            for rid in [rid for rid in self.found if rid not in live]:
                for record in self.found.pop(rid):
                    self.stop_later(record, "its release is no longer deployed")
        await asyncio.sleep(CLAIM_GRACE_S)
        for records in self.found.values():
            for record in records:
                self.stop_later(record, f"nothing claimed it within {CLAIM_GRACE_S:g} s")
        self.found.clear()

    def stop_later(self, record: ReplicaRecord, why: str) -> None:
        log.warning("stopping replica %s of release %s: %s", record.replica_id,
                    record.release_id, why)
        task = asyncio.create_task(self.stop_recorded(record))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def stop_recorded(self, record: ReplicaRecord) -> None:
        """SIGTERM (it drains), then SIGKILL of its group; then forget it."""
        if signal_recorded(record, signal.SIGTERM):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + STOP_GRACE_S
            while is_running(record) and loop.time() < deadline:
                await asyncio.sleep(STOP_POLL_S)
            signal_recorded(record, signal.SIGKILL)
        self.registry.remove(record.replica_id)
        _remove_quietly(Path(record.socket_path))

    # -- claims -----------------------------------------------------------------------------------
    async def claim(
        self, release_id: int, plugin_dir: Path, env_path: Path | None
    ) -> list[ReplicaRecord]:
        """The found replicas of the release whose files and environment match; the others
        of that release are stopped."""
        records = self.found.pop(release_id, [])
        if not records:
            return []
        digest = await self.code_hash(release_id, plugin_dir)
        env = str(env_path) if env_path is not None else None
        fit: list[ReplicaRecord] = []
        for record in records:
            if record.code_hash != digest:
                self.stop_later(record, "the release's files changed")
            elif record.env_path != env:
                self.stop_later(record, "the release's environment changed")
            else:
                fit.append(record)
        return fit

    async def code_hash(self, release_id: int, plugin_dir: Path) -> str:
        key = (release_id, plugin_dir)
        if key not in self._hashes:
            self._hashes[key] = await asyncio.to_thread(code_hash, plugin_dir)
        return self._hashes[key]

    async def recorder(
        self, group: GroupSpec, replica_id: str, spec: ReplicaSpec
    ) -> Callable[[int], None]:
        """What records a replica of ``group`` started from ``spec``, given its pid."""
        digest = await self.code_hash(group.release_id, group.plugin_dir)
        uid = spec.sandbox.uid if spec.sandbox is not None else None

        def record(pid: int) -> None:
            self.record_started(started_record(
                pid, replica_id, group.release_id, group.deployment_name, digest,
                group.env_path, spec.socket_path, spec.secret or "",
                spec.output_path or Path(), uid,
            ))

        return record

    def record_started(self, record: ReplicaRecord) -> None:
        self.registry.write(record)

    def record_adopted(self, record: ReplicaRecord) -> None:
        """The replica is this server's now: its record names this server."""
        self.registry.write(replace(
            record, server_pid=os.getpid(), server_start_time=process_start_time(os.getpid()) or 0
        ))

    async def close(self, keep: bool = False) -> None:
        """The server stops: unless ``keep``, found replicas nobody claimed stop too."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if not keep:
            for records in self.found.values():
                for record in records:
                    self.stop_later(record, "the server stops")
            self.found.clear()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)


def started_record(
    pid: int, replica_id: str, release_id: int, deployment_name: str, digest: str,
    env_path: Path | None, socket_path: Path, secret: str, output_path: Path, uid: int | None,
) -> ReplicaRecord:
    """The record of a replica just spawned (start time read now from /proc)."""
    return ReplicaRecord(
        replica_id=replica_id,
        release_id=release_id,
        deployment_name=deployment_name,
        code_hash=digest,
        env_path=str(env_path) if env_path is not None else None,
        pid=pid,
        start_time=process_start_time(pid) or 0,
        socket_path=str(socket_path),
        secret=secret,
        output_path=str(output_path),
        uid=uid,
        server_pid=os.getpid(),
        server_start_time=process_start_time(os.getpid()) or 0,
    )


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
