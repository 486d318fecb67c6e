"""The local backend's replica pool (``PLUGHOST_REPLICA_POOL``): sandboxed replica processes
started before any release needs them, so a deploy loads its plugin into one instead of
paying an interpreter start, the bubblewrap wrapper and the worker's imports
(``bench.cold_start``: most of a replica start).

A member is ``plughost.replica.spare --claim-fd N`` in bubblewrap, started with nothing of
any namespace: its plugin mount and its models mount are the two empty folders of its slot
(``<home>/pool/<member>/plugin`` and ``.../models``), it has no network, the default memory
limit, a uid of its own, and the environment every sandboxed replica gets (no release's
variables, no secret). It enters the in-process layers (uid, rlimits, no_new_privs, seccomp)
at once and waits on its claim descriptor. A claim, for a release whose replica would have
been wrapped exactly so (:meth:`~plughost.sandbox.host.Sandbox.poolable`), fills the slot
(hard links to the release's files and to the namespace's model folder, copies across file
systems), then writes the release's environment and worker options on the descriptor and
closes it: the member loads the plugin and answers the usual start-up handshake. What
differs per member is its slot, socket, secret, uid and output file; what differs per
release arrives only with the claim, over a pipe only that member holds.

The pool is refilled in the background after each claim and sized by memory: at most
``replica_pool`` members, fewer when the machine's available memory is short. A release the
pool cannot serve (a plugin environment, egress, another memory limit) and any start while
the pool is empty fall back to a normal replica start. Members that keep dying before use
stop the pool (a log line says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from plughost.backends.base import BASE_ENV
from plughost.backends.local.launch import ChildProcess, ReplicaSpec, launch_replica
from plughost.backends.local.registry import ReplicaRegistry, process_start_time
from plughost.backends.local.replica import ReplicaProcess
from plughost.backends.local.signals import kill_and_reap
from plughost.config import Settings
from plughost.replica.auth import new_secret
from plughost.sandbox.host import Sandbox

log = logging.getLogger("plughost.backend.local")

MEMBER_MIB = 32  # an idle member's resident memory, rounded up (bench.cold_start)
MEMORY_RESERVE_MIB = 512  # left to the server and the replicas when sizing the pool
FAILURES_MAX = 3  # members that end before use in a row: the pool stops
# a claim's refill waits this long: a member's start (about 70 ms of CPU) would otherwise
# compete with the rest of the deploy that claimed (its smoke call, its switch)
REFILL_DELAY_S = 0.05
SLOT_FOLDERS = ("plugin", "models")


def available_memory_mib(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The kernel's MemAvailable in MiB; None when it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def pool_size(wanted: int, available_mib: int | None) -> int:
    """Members to keep: ``wanted``, bounded by the memory left above the reserve."""
    if available_mib is None:
        return wanted
    return max(0, min(wanted, (available_mib - MEMORY_RESERVE_MIB) // MEMBER_MIB))


def link_tree(source: Path, dest: Path) -> None:
    """``dest`` (an existing empty folder) filled with hard links to ``source``'s files,
    copies where linking fails (another file system); symbolic links are copied as links."""
    for dirpath, dirnames, filenames in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        for name in dirnames:
            os.mkdir(dest / rel / name, 0o755)
        for name in filenames:
            src, dst = Path(dirpath) / name, dest / rel / name
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def fill_slot(slot: Path, plugin_dir: Path, models: Path | None) -> None:
    """The release's files (and its namespace's models) into a member's slot."""
    link_tree(plugin_dir, slot / "plugin")
    if models is not None:
        link_tree(models, slot / "models")


def remove_slot(slot: Path) -> None:
    shutil.rmtree(slot, ignore_errors=True)


def server_tag(pid: int) -> str:
    """A server process's folder of slots: its pid and start time (pids are reused)."""
    return f"{pid}-{process_start_time(pid)}"


def sweep_slots(root: Path, registry: ReplicaRegistry | None) -> None:
    """Remove the slots that servers no longer running left under ``root`` (members end
    with their server; a claimed one may still run, adopted: its record keeps its slot)."""
    try:
        folders = [f for f in root.iterdir() if f.is_dir()]
    except OSError:
        return
    recorded = {r.replica_id for r in registry.load()} if registry is not None else set()
    for folder in folders:
        pid, _, _ = folder.name.partition("-")
        if pid.isdigit() and server_tag(int(pid)) == folder.name:
            continue  # a server still running (this one, or another on this home)
        for slot in folder.iterdir():
            if slot.name not in recorded:
                remove_slot(slot)
        with contextlib.suppress(OSError):
            folder.rmdir()  # once its last adopted replica's slot is gone


@dataclass
class Member:
    """One waiting pool member: its spec and process, its slot and the write end of its
    claim pipe. It becomes a :class:`ReplicaProcess` only at its claim, in the claiming
    release's context: the task that forwards its output lines (started with it) then sends
    them to that release's log."""

    replica_id: str
    spec: ReplicaSpec
    process: ChildProcess
    slot: Path
    claim_fd: int
    watcher: asyncio.Task[None] | None = None

    def close_claim(self) -> None:
        """Close the claim pipe (a member that reads end of file exits)."""
        if self.claim_fd >= 0:
            fd, self.claim_fd = self.claim_fd, -1
            os.close(fd)


@dataclass(frozen=True)
class Claim:
    """What a release gives a member: its replica spec (the member's socket, secret, output
    and sandbox in it), its environment, worker options and preload."""

    spec: ReplicaSpec
    plugin_dir: Path
    models: Path | None
    env: dict[str, str]
    options: dict[str, str]
    preload: Any = None

    def message(self) -> bytes:
        return orjson.dumps({"env": self.env, "args": self.options, "preload": self.preload})


class ReplicaPool:
    """Pre-started, pre-sandboxed replica processes for any release of this backend."""

    def __init__(
        self,
        settings: Settings,
        sandbox: Sandbox,
        socket_dir: Path,
        detached: bool,
        registry: ReplicaRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.socket_dir = socket_dir
        self.slot_root = settings.resolved_home / "pool" / server_tag(os.getpid())
        self.detached = detached
        self.registry = registry
        sweep_slots(self.slot_root.parent, registry)
        self.size = pool_size(settings.replica_pool, available_memory_mib())
        self.members: list[Member] = []
        self.starting = 0
        self._failures = 0
        self._closed = False
        self._started = False
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def active(self) -> bool:
        return not self._closed and self.size > 0 and self._failures < FAILURES_MAX

    # -- filling ----------------------------------------------------------------------------
    def start(self) -> None:
        """The first fill (on the running loop); later calls do nothing (claims refill)."""
        if not self._started:
            self._started = True
            self.refill()

    def refill(self) -> None:
        """Start the members missing (in the background, on the running loop, each in a
        context of its own: never one a caller's release set, such as its log sink)."""
        loop = asyncio.get_running_loop()
        while self.active and len(self.members) + self.starting < self.size:
            self.starting += 1
            self._track(loop.create_task(self._add_member(), context=contextvars.Context()))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _add_member(self) -> None:
        try:
            member = await self._spawn()
        except Exception as exc:  # noqa: BLE001 - the pool shrinks; deploys start cold
            self._failures += 1
            log.warning("replica pool: a member failed to start: %s", exc)
            return
        finally:
            self.starting -= 1
        if self._closed:
            await self._end(member)
            return
        member.watcher = asyncio.ensure_future(self._watch(member))
        self.members.append(member)

    async def _spawn(self) -> Member:
        replica_id = f"pool-{secrets.token_hex(5)}"
        slot = self.slot_root / replica_id
        for name in SLOT_FOLDERS:
            (slot / name).mkdir(mode=0o755, parents=True)
        os.chmod(slot, 0o755)
        launch = self.sandbox.pool_launch(slot, self.detached)
        read_fd, write_fd = os.pipe()
        settings = self.settings
        spec = ReplicaSpec(
            plugin_dir=slot / "plugin",
            socket_path=self.socket_dir / f"{replica_id}.sock",
            env={**BASE_ENV, "HOME": "/tmp"},
            start_timeout_s=settings.replica_start_timeout_s,
            call_timeout_s=settings.replica_call_timeout_s,
            drain_timeout_s=settings.drain_timeout_s,
            sandbox=launch,
            kill_on_call_timeout=True,
            hold_fd=read_fd,
            pooled=True,
            secret=new_secret(),
            output_path=self.registry.output_path(replica_id) if self.registry else None,
            detached=self.detached,
            orphan_timeout_s=settings.replica_orphan_timeout_s,
        )
        try:
            process = await launch_replica(spec)
        except BaseException:
            os.close(write_fd)
            self.sandbox.release(launch)
            remove_slot(slot)
            raise
        finally:
            os.close(read_fd)  # the member holds its own copy
        return Member(replica_id, spec, process, slot, write_fd)

    async def _watch(self, member: Member) -> None:
        """A member that ends before its claim leaves the pool (and is replaced)."""
        await member.process.wait()
        if member in self.members:
            self.members.remove(member)
            self._failures += 1
            log.warning("replica pool: member %s ended before use", member.process.pid)
            await self._end(member)
            self.refill()

    async def _end(self, member: Member) -> None:
        member.close_claim()
        await kill_and_reap(member.process)
        self.sandbox.release(member.spec.sandbox)
        member.spec.socket_path.unlink(missing_ok=True)
        if member.spec.output_path is not None:
            member.spec.output_path.unlink(missing_ok=True)
        remove_slot(member.slot)

    # -- claims -----------------------------------------------------------------------------
    def take(
        self, namespace_id: str | None, serve_config: dict[str, Any], env_dir: Path | None
    ) -> Member | None:
        """A live member for a replica of this release, out of the pool (None: start one
        normally). The pool refills once the claim is done."""
        if not self.active or not self.sandbox.poolable(namespace_id, serve_config, env_dir):
            return None
        while self.members:
            member = self.members.pop(0)
            if member.watcher is not None:
                member.watcher.cancel()
            if member.process.returncode is None:
                return member
            self._track(asyncio.ensure_future(self._end(member)))
        self._refill_later()
        return None

    async def claim(
        self, member: Member, claim: Claim, namespace_id: str | None = None
    ) -> ReplicaProcess:
        """Fill the member's slot, move it into a cgroup of ``namespace_id`` (while it waits
        on its claim pipe, before any plugin code), send it the release and wait until it is
        ready (raises as a replica start does, the member killed). From :meth:`take` on, the
        member's uid and output are the caller's to give back; its slot is removed here on
        failure."""
        try:
            try:
                await asyncio.to_thread(fill_slot, member.slot, claim.plugin_dir, claim.models)
                self.sandbox.claim_cgroup(claim.spec.sandbox, namespace_id)
                fd, member.claim_fd = member.claim_fd, -1
                _write_all(fd, claim.message())
                replica = ReplicaProcess(claim.spec, member.process)
            except BaseException:
                member.close_claim()
                await kill_and_reap(member.process)
                raise
            await replica.until_ready()  # killed on failure
        except BaseException:
            claim.spec.socket_path.unlink(missing_ok=True)
            remove_slot(member.slot)
            raise
        finally:
            self._refill_later()
        self._failures = 0
        return replica

    def _refill_later(self) -> None:
        """Refill after :data:`REFILL_DELAY_S` (the claiming deploy finishes first)."""
        asyncio.get_running_loop().call_later(REFILL_DELAY_S, self.refill)

    async def close(self) -> None:
        """End every waiting member and remove its slot (claimed ones belong to groups)."""
        self._closed = True
        members, self.members = self.members, []
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        members += self.members  # added while the tasks finished
        self.members = []
        for member in members:
            if member.watcher is not None:
                member.watcher.cancel()
        await asyncio.gather(*(self._end(m) for m in members), return_exceptions=True)

    def drop_root(self) -> None:
        """Remove this server's slot folder once empty (after its groups stopped)."""
        for folder in (self.slot_root, self.slot_root.parent):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` on the claim pipe and close it. The member is blocked reading it, so a
    message larger than the pipe's buffer drains as it is written."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
