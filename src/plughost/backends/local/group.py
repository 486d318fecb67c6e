"""A local replica group: the replicas of one release as OS processes on this machine.

A group keeps its replicas alive: one that exits is replaced with backoff; a group whose
replacements keep failing to start is marked failed and the controller takes it down.
Calls go to the least busy replica. With an :class:`~.local_adopt.Adoption` (the server's
backend) the replicas outlive the server and the group first adopts those an earlier server
left running; with an :class:`~.local_autoscale.Autoscaler` (serve_config min/max_replicas)
their count follows the calls in flight.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import orjson

from plughost.backends.base import (
    CallFailed,
    CallTimedOut,
    GroupHealth,
    GroupSnapshot,
    GroupSpec,
    ReplicaGroup,
    StartFailed,
    Unavailable,
)
from plughost.backends.local.adopt import Adoption
from plughost.backends.local.autoscale import Autoscaler, start_autoscaler
from plughost.backends.local.exit_reason import (
    describe_exit,
    explain_call,
    explain_start,
    killed_call,
    memory_limit_mib,
    note_cgroup_kill,
    replica_kill,
)
from plughost.backends.local.pool import Member, ReplicaPool, remove_slot
from plughost.backends.local.registry import ReplicaRecord
from plughost.backends.local.replica import ReplicaProcess, ReplicaSpec, ReplicaStartError
from plughost.backends.local.spare import SPARE_HOLD_S
from plughost.backends.local.specs import SpecMaker
from plughost.backends.stream import CallStream
from plughost.config import Settings
from plughost.domain.container import ContainerCalls, ContainerScope
from plughost.egress.binding import egress_release_gone
from plughost.sandbox.host import Sandbox

log = logging.getLogger("plughost.backend.local")

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
CRASH_WINDOW_S = 30.0


def pick_least_busy(replicas: list[ReplicaProcess], turn: int) -> ReplicaProcess:
    """The replica with the fewest calls in flight; among the equally least busy ones the
    ``turn``-th (modulo their count), so a caller that counts turns takes them in turn."""
    if len(replicas) == 1:  # one replica, the usual case: nothing to compare
        return replicas[0]
    least = min(r.load for r in replicas)
    idle = [r for r in replicas if r.load == least]
    return idle[turn % len(idle)]


class LocalReplicaGroup(ReplicaGroup):
    """The replicas of one release, least-busy routing and self-healing."""

    def __init__(
        self,
        spec: GroupSpec,
        settings: Settings,
        socket_dir: Path,
        sandbox: Sandbox | None = None,
        adoption: Adoption | None = None,
        container: ContainerCalls | None = None,
        pool: ReplicaPool | None = None,
    ) -> None:
        self.spec = spec
        self.pool = pool  # the backend's pre-started replicas (.pool), claimed on launch
        # the plugin's container calls, answered for the release's namespace
        self.container = (
            None if container is None
            else partial(container.call, ContainerScope(spec.namespace_id))
        )
        self.settings = settings
        self.socket_dir = socket_dir
        self.sandbox = sandbox
        self.adoption = adoption  # given, the replicas outlive the server
        self.replicas: list[ReplicaProcess] = []
        self._stopping = False
        self._crashes = 0
        self._failed_error: str | None = None
        self._healers: set[asyncio.Task[None]] = set()
        self._turn = 0  # round-robin among equally busy replicas
        # the autoscaler (serve_config min/max_replicas) and the replicas it retired
        self.autoscaler: Autoscaler | None = None
        self.retired: set[ReplicaProcess] = set()
        # crashed replicas that were replaced (the restart metric), and how the last one
        # ended in words (its memory limit when it ran out: exit_reason)
        self.restarts = 0
        self.last_exit: tuple[float, str] | None = None
        # the plugin's dependencies as its last started replica learned them: the next warm
        # spare imports them ahead of need (PLUGHOST_SPARE_PRELOAD; plughost.replica.preload)
        self.preload: str | None = None
        self.memory_limit_mib = (
            memory_limit_mib(spec.serve_config, sandbox.config.memory_gb)
            if sandbox is not None and sandbox.enabled and sandbox.layers.get("rlimits")
            else None
        )
        self.specs = SpecMaker(spec, settings, socket_dir, sandbox, adoption, self.container)

    def _replica_spec(self, replica_id: str, with_sandbox: bool = True) -> ReplicaSpec:
        return self.specs.replica(replica_id, with_sandbox)

    def _release(self, spec: ReplicaSpec) -> None:
        if self.sandbox is not None:
            self.sandbox.release(spec.sandbox)

    async def launch(self, hold_fd: int | None = None) -> ReplicaProcess:
        """Start one more replica of the release and route calls to it once ready (raises
        ReplicaStartError). ``hold_fd`` makes it a warm spare (:mod:`.local_spare`) that
        loads the plugin only when a byte arrives on that descriptor. Otherwise a member of
        the backend's replica pool (:mod:`.pool`) is claimed when the release fits one."""
        if hold_fd is None and self.pool is not None:
            member = self.pool.take(
                self.spec.namespace_id, self.spec.serve_config, self.spec.env_path
            )
            if member is not None:
                return await self._claim(member)
        replica_id = f"r{self.spec.release_id}-{secrets.token_hex(4)}"
        spec = self._replica_spec(replica_id)
        if hold_fd is not None:  # a warm spare (local_spare): loads the plugin on its byte
            preload = self.preload if self.settings.spare_preload else None
            spec = replace(spec, hold_fd=hold_fd, start_timeout_s=SPARE_HOLD_S, preload=preload)
        on_spawn = await self.adoption.recorder(self.spec, replica_id, spec) if self.adoption else None
        try:
            replica = await ReplicaProcess.start(spec, on_spawn)
        except BaseException as exc:
            self._release(spec)
            note_cgroup_kill(exc, spec.sandbox)  # killed in its cgroup: say so
            self._forget(replica_id)
            raise
        self._started(replica, replica_id)
        return replica

    def _started(self, replica: ReplicaProcess, replica_id: str) -> None:
        self._keep(replica, replica_id)
        if replica.preload is not None:
            self.preload = orjson.dumps(replica.preload).decode()

    async def _claim(self, member: Member) -> ReplicaProcess:
        """A replica of the release loaded into a pool member (:mod:`.pool`)."""
        assert self.pool is not None and self.sandbox is not None
        preload = self.preload if self.settings.spare_preload else None
        claim = self.specs.claim(member, self.sandbox, preload)
        try:
            if self.adoption is not None:
                record = await self.adoption.recorder(self.spec, member.replica_id, claim.spec)
                record(member.process.pid)
            replica = await self.pool.claim(member, claim, self.spec.namespace_id)
        except BaseException:
            self._release(claim.spec)
            self._forget(member.replica_id)
            raise
        slot = member.slot
        replica.on_exit(lambda _r: remove_slot(slot))
        self._started(replica, member.replica_id)
        return replica

    def _keep(self, replica: ReplicaProcess, replica_id: str) -> None:
        started = time.monotonic()
        replica.on_exit(lambda r: self._release(r.spec))
        replica.on_exit(lambda r: self._forget(replica_id))
        replica.on_exit(lambda r: self._on_exit(r, started))
        self.replicas.append(replica)

    def _forget(self, replica_id: str) -> None:
        if self.adoption is not None:
            self.adoption.registry.remove(replica_id)

    # -- adoption -------------------------------------------------------------------------------
    async def _adopt_found(self) -> int:
        """Adopt the replicas an earlier server left running for this release; how many."""
        if self.adoption is None:
            return 0
        records = await self.adoption.claim(
            self.spec.release_id, self.spec.plugin_dir, self.spec.env_path
        )
        most = max(self.spec.num_replicas, int(self.spec.serve_config.get("max_replicas") or 0))
        for record in records[most:]:
            self.adoption.stop_later(record, "more replicas than the release runs")
        results = await asyncio.gather(
            *(self._adopt(r) for r in records[:most]), return_exceptions=True
        )
        for record, result in zip(records, results, strict=False):
            if isinstance(result, BaseException):
                self.adoption.stop_later(record, f"not adopted: {result}")
        return sum(1 for r in results if not isinstance(r, BaseException))

    async def _adopt(self, record: ReplicaRecord) -> None:
        spec = replace(
            self._replica_spec(record.replica_id, with_sandbox=False),
            socket_path=Path(record.socket_path),
            output_path=Path(record.output_path),
            secret=record.secret,
        )
        replica = await ReplicaProcess.adopt(spec, record.pid, record.start_time)
        if self.sandbox is not None and record.uid is not None:
            sandbox, uid = self.sandbox, record.uid
            sandbox.claim_uid(uid)
            replica.on_exit(lambda _r: sandbox.release_uid(uid))
        self._keep(replica, record.replica_id)
        if self.adoption is not None:
            self.adoption.record_adopted(record)
        log.info("adopted replica %s (pid %s) of %s", record.replica_id, record.pid,
                 self.spec.deployment_name)

    async def start_all(self) -> None:
        adopted = await self._adopt_found()
        missing = max(0, self.spec.num_replicas - adopted)
        results = await asyncio.gather(
            *(self.launch() for _ in range(missing)), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.stop(0)
            first = explain_start(errors[0], self.memory_limit_mib)
            if isinstance(first, StartFailed):
                raise first
            raise StartFailed(f"{type(first).__name__}: {first}") from first
        self.autoscaler = start_autoscaler(self)

    # -- self-healing ---------------------------------------------------------------------------
    def _on_exit(self, replica: ReplicaProcess, started: float) -> None:
        if replica in self.replicas:
            self.replicas.remove(replica)
        if self._stopping or replica in self.retired:
            self.retired.discard(replica)
            return
        if time.monotonic() - started < CRASH_WINDOW_S:
            self._crashes += 1
        self.restarts += 1
        how = describe_exit(replica.returncode, self.memory_limit_mib, killed=replica_kill(replica))
        self.last_exit = (time.time(), f"replica {replica.pid}: {how}")
        log.warning(
            "replica %s of %s ended: %s; replacing it", replica.pid, self.spec.deployment_name, how
        )
        task = asyncio.create_task(self._replace())
        self._healers.add(task)
        task.add_done_callback(self._healers.discard)

    async def _replace(self) -> None:
        while not self._stopping:
            if self._crashes >= self.settings.max_start_crashes:
                last = f" (last: {self.last_exit[1]})" if self.last_exit else ""
                self._failed_error = self._failed_error or (
                    f"replicas crashed {self._crashes} times in a row; giving up{last}"
                )
                return
            await asyncio.sleep(BACKOFF_S[min(self._crashes, len(BACKOFF_S) - 1)])
            if self._stopping:
                return
            try:
                await self.launch()
                return
            except ReplicaStartError as exc:
                self._crashes += 1
                exc = explain_start(exc, self.memory_limit_mib)
                self._failed_error = f"replica failed to restart: {exc}"
                log.warning("restart of a %s replica failed: %s", self.spec.deployment_name, exc)

    # -- calls ------------------------------------------------------------------------------
    def _pick(self, avoid: ReplicaProcess | None = None) -> ReplicaProcess:
        """The least busy live replica; ties go round-robin (so sequential calls, each alone
        in flight, spread over the replicas instead of all landing on the first)."""
        candidates = [r for r in self.replicas if r is not avoid and r.alive]
        if not candidates:
            raise Unavailable("no replica is ready (restarting)")
        self._turn += 1
        return pick_least_busy(candidates, self._turn)

    async def call_body(self, body: bytes, deadline_s: float | None = None) -> bytes | CallStream:
        """The fast path: a raw `{"inputs", "parameters"}` body in, the result's JSON out
        (a CallStream when the plugin streams). Callers pass a body already checked to be one
        JSON object; ``deadline_s``: the call's deadline in seconds from now.

        A call whose replica died under it is retried once on another live replica; with
        none left the caller gets Unavailable (never a hang). A group scaled to zero starts
        a replica first and the call waits for it (bounded; :mod:`.local_autoscale`)."""
        if self.autoscaler is not None:
            self.autoscaler.last_call = time.monotonic()
            if not self.replicas:
                await self.autoscaler.wake()
        replica = self._pick()
        try:
            return await replica.call_raw(body, checked=True, deadline_s=deadline_s)
        except CallFailed as exc:
            if exc.type_name == "MemoryError":  # say which limit it ran into
                raise explain_call(exc, self.memory_limit_mib) from exc
            raise
        except CallTimedOut:
            raise  # this request hung its replica: never hand it to another one
        except Unavailable:
            if (killed := killed_call(replica)) is not None:  # OOM-killed in its cgroup
                raise killed from None
            if replica.alive:
                raise  # the plugin may still be running the call
            return await self._pick(avoid=replica).call_raw(body, checked=True, deadline_s=deadline_s)

    async def health(self) -> bool:
        if not self.replicas:
            return False
        results = await asyncio.gather(*(r.health() for r in list(self.replicas)))
        return all(results)

    def observe(self) -> GroupHealth:
        ready = sum(1 for r in self.replicas if r.alive)
        return GroupHealth(
            desired=self.target,
            ready=ready,
            failed=self._failed_error is not None and ready == 0 and not self._healers,
            error=self._failed_error,
        )

    def snapshot(self) -> GroupSnapshot:
        ready = 0
        for replica in self.replicas:
            if replica.alive:
                ready += 1
        scaler = self.autoscaler
        if scaler is None:  # a fixed count: most groups, and every status poll reads one
            return GroupSnapshot(ready, 0, self.spec.num_replicas, self.restarts, None, self.last_exit)
        at_zero = scaler.at_zero
        return GroupSnapshot(
            ready=ready,
            starting=scaler.starting,
            target=scaler.target,
            restarts=self.restarts,
            note=scaler.note,
            last_exit=self.last_exit,
            at_zero=at_zero,
            # the median of the starts seen is read only where it is shown: at zero
            cold_start_s=scaler.cold_start_s() if at_zero else None,
        )

    @property
    def target(self) -> int:
        """The replicas wanted: the autoscaler's target, else the fixed count."""
        return self.autoscaler.target if self.autoscaler is not None else self.spec.num_replicas

    @property
    def starting(self) -> int:
        """Replicas the autoscaler is starting now."""
        return self.autoscaler.starting if self.autoscaler is not None else 0

    async def stop(self, drain_timeout_s: float) -> None:
        self._stopping = True
        if self.autoscaler is not None:
            self.autoscaler.stop()
        for task in list(self._healers):
            task.cancel()
        replicas, self.replicas = list(self.replicas), []
        # a stopped replica runs its exit callbacks itself (its record goes) before it returns
        await asyncio.gather(*(r.stop(drain_timeout_s) for r in replicas), return_exceptions=True)
        egress_release_gone(self.sandbox, self.spec.namespace_id, self.spec.plugin_dir)

    def stop_following_output(self) -> int:
        """Stop reading the replicas' output files where this server is (a takeover: the
        successor reads on from there); how many were followed."""
        return sum(1 for r in self.replicas if r.stop_following_output())

    def detach(self) -> None:
        """Let go of every replica, leaving them running (keep-on-stop)."""
        self._stopping = True
        if self.autoscaler is not None:
            self.autoscaler.stop()
        for task in list(self._healers):
            task.cancel()
        replicas, self.replicas = list(self.replicas), []
        for replica in replicas:
            replica.detach()
