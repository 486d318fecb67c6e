"""Which server runs the controller when several share one PostgreSQL database.

Choice: a lease row with an epoch used as a fencing token (``leases``, migration 0006),
not a PostgreSQL advisory lock. Why:

- An advisory lock lives as long as one connection. When that connection breaks (a network
  blip, a PgBouncer restart, a server frozen in a long GC or a stopped container) the lock is
  released at once on the database side while the old leader still believes it leads and
  keeps writing on its other pooled connections: nothing ties those writes to the lock.
- A lease is a row: its epoch increases on every takeover, and every controller write checks,
  in its own transaction, that the row still names this server with the epoch it was elected
  at and has not expired (:meth:`~plughost.cluster.leases.SqlLeases.check`, which holds the
  row ``FOR SHARE`` until commit). A leader that lost its lease cannot change a release after
  another one took over, whatever its own clock or connections say.
- Expiry uses the database's clock only, so servers with skewed clocks agree.

Timing: the leader renews every ``renew_s`` (1 s); a lease not renewed for ``ttl_s`` (3 s)
expires; followers try to take it every ``poll_s`` (0.5 s). A SIGKILLed leader is replaced
within ttl + poll (about 3.5 s). A leader also stops acting on its own once ``ttl_s`` has
passed since its last successful renewal began (:meth:`Elector.is_leader`), and a renewal
that finds the epoch moved on ends its leadership (``on_lost``). A server restarted after a
crash finds the lease still held at its own address: when the holder, named by machine,
pid and process start time, is a process of this machine that no longer runs, it takes the
lease over at once instead of waiting out the ttl (a single server on PostgreSQL restarts
as fast as on SQLite).

Queue claims need no ``SKIP LOCKED``: only the lease holder claims, each claim is a
compare-and-set ``queued -> pending`` that the fence guards, so a release is taken once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from plughost.cluster.leases import LeaseInfo, LeaseLost

log = logging.getLogger("plughost.leader")

__all__ = ["Elector", "LeaseInfo", "LeaseLost", "LeaseStore"]


class LeaseStore(Protocol):
    """The lease table (SqlLeases on PostgreSQL; a fake in unit tests)."""

    def acquire(self, name: str, holder: str, address: str, ttl_s: float) -> int | None: ...

    def reclaim(
        self, name: str, holder: str, address: str, epoch: int, ttl_s: float
    ) -> int | None: ...

    def renew(self, name: str, holder: str, epoch: int, ttl_s: float) -> bool: ...

    def release(self, name: str, holder: str, epoch: int) -> None: ...

    def read(self, name: str) -> LeaseInfo | None: ...

    def check(self, session: Any, name: str, holder: str, epoch: int) -> None: ...


class Elector:
    """Takes, renews and gives up the controller's lease; tells the server when it leads.

    ``on_elected(epoch)`` runs when this server takes the lease, ``on_lost()`` when it
    stops holding it (taken over, or not renewed in time). Both are plain callables run on
    the event loop; they start and stop the controller.
    """

    def __init__(
        self,
        leases: LeaseStore,
        holder: str,
        address: str,
        *,
        name: str = "controller",
        ttl_s: float = 3.0,
        renew_s: float = 1.0,
        poll_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        holder_gone: Callable[[str], bool] = lambda _holder: False,
    ) -> None:
        self.leases = leases
        self.holder = holder
        self.address = address
        self.name = name
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self.poll_s = poll_s
        self.clock = clock
        # whether the process a holder string names is known to be dead (a restart of this
        # server after a crash finds its predecessor's lease still running)
        self.holder_gone = holder_gone
        self.epoch: int | None = None
        self.leader: LeaseInfo | None = None  # the last lease read while following
        self._valid_until = 0.0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None  # run() as started by start()
        self.on_elected: Callable[[int], None] = lambda _epoch: None
        self.on_lost: Callable[[], None] = lambda: None

    # -- what the rest of the server asks ----------------------------------------------------
    def is_leader(self) -> bool:
        """Whether this server may act as the controller now (the lease is held and, by
        our own clock, cannot have expired yet)."""
        return self.epoch is not None and self.clock() < self._valid_until

    def leader_address(self) -> str | None:
        """Where the leader serves (its peer URL); ours when we lead; None when unknown."""
        if self.epoch is not None:
            return self.address
        lease = self.leader
        return lease.address if lease is not None and not lease.expired else None

    def fence(self, session: Any) -> None:
        """Run inside every controller write's transaction: LeaseLost unless we still hold
        the lease at the epoch we were elected with."""
        epoch = self.epoch
        if epoch is None:
            raise LeaseLost("this server does not hold the controller lease")
        self.leases.check(session, self.name, self.holder, epoch)

    # -- the loop ------------------------------------------------------------------------------
    def start(self) -> None:
        """Run :meth:`run` in a task of its own; again after :meth:`stop` (a takeover that
        did not happen). Nothing when it runs already."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="plughost-elector")

    async def run(self) -> None:
        while not self._stopping:
            await self.step()
            await asyncio.sleep(self.renew_s if self.epoch is not None else self.poll_s)

    async def step(self) -> None:
        """One round: renew while leading, else try to take the lease (and note who has it)."""
        started = self.clock()
        if self.epoch is not None:
            await self._renew(started)
            return
        try:
            epoch = await asyncio.to_thread(
                self.leases.acquire, self.name, self.holder, self.address, self.ttl_s
            )
            if epoch is None:
                epoch = await asyncio.to_thread(self._reclaim)
            if epoch is None:
                return
        except Exception:  # the database is away: stay a follower, try again
            log.warning("could not read the controller lease", exc_info=True)
            return
        self.epoch, self._valid_until = epoch, started + self.ttl_s
        self.leader = None
        log.warning("this server now runs the controller (lease epoch %s)", epoch)
        self.on_elected(epoch)

    def _reclaim(self) -> int | None:
        """Read who leads; take the lease over at once when it is held at our own address
        by a process known to be dead (this server restarted after a crash: waiting out the
        ttl would only delay the restore)."""
        lease = self.leader = self.leases.read(self.name)
        if lease is None or lease.expired or lease.address != self.address:
            return None
        if lease.holder == self.holder or not self.holder_gone(lease.holder):
            return None
        log.warning("taking over the lease of an earlier process at %s", self.address)
        return self.leases.reclaim(self.name, self.holder, self.address, lease.epoch, self.ttl_s)

    async def _renew(self, started: float) -> None:
        epoch = self.epoch
        assert epoch is not None
        try:
            held = await asyncio.to_thread(
                self.leases.renew, self.name, self.holder, epoch, self.ttl_s
            )
        except Exception:  # keep trying until our lease may have expired
            log.warning("could not renew the controller lease", exc_info=True)
            if self.clock() >= self._valid_until:
                self._lose("not renewed in time")
            return
        if held:
            self._valid_until = started + self.ttl_s
        else:
            self._lose("taken over by another server")

    def _lose(self, why: str) -> None:
        log.error("this server lost the controller lease (epoch %s): %s", self.epoch, why)
        self.epoch = None
        self._valid_until = 0.0
        self.on_lost()

    async def stop(self) -> None:
        """Stop electing (the task :meth:`start` began ends); a leader gives its lease up so
        a follower takes over at once."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        epoch, self.epoch = self.epoch, None
        if epoch is None:
            return
        try:
            await asyncio.to_thread(self.leases.release, self.name, self.holder, epoch)
        except Exception:  # it expires by itself
            log.warning("could not release the controller lease", exc_info=True)
