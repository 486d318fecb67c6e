"""A server among several on one PostgreSQL database: leader election, follower routing and
change sync wired to one runtime; and the refusal of a second server on one SQLite file.

Every server answers the whole API from its own memory. What it keeps in step with the
database (:class:`plughost.cluster.change_feed.ChangeFeed`, within a notification's delay, at
worst ``catch_up_s``): the release board behind the status endpoint, the API key cache and,
on followers, the route table. Only the lease holder (plughost.cluster.election) ticks the
controller, starts replicas and writes release transitions; followers route calls to it
(plughost.cluster.forward). A leader that loses its lease while alive stops its controller
and exits with a clear log line; its supervisor restarts it as a follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from plughost.backends.local.registry import process_start_time
from plughost.cluster.change_feed import ChangeFeed, Changes, follower_routes
from plughost.cluster.direct import DirectReplicas
from plughost.cluster.election import Elector
from plughost.cluster.forward import ForwardGroup, PeerCalls, forward_spec
from plughost.cluster.leases import SqlLeases
from plughost.cluster.ray_follow import RayFollower
from plughost.config import Settings
from plughost.control.controller import Controller
from plughost.dataplane.routes import RouteTable
from plughost.domain.ids import deployment_name_for
from plughost.domain.release import ReleaseView
from plughost.domain.states import Status
from plughost.persistence.db import Database
from plughost.persistence.releases import Releases
from plughost.persistence.tables import ReleaseEvent
from plughost.server.home_lock import lock_sqlite_home, sqlite_home_locked, unlock_sqlite_home
from plughost.services.accounts import Accounts

log = logging.getLogger("plughost.cluster")


def peer_url(settings: Settings) -> str:
    """How other servers reach this one: PLUGHOST_PEER_URL, else http://host:port (the
    bind address, or this machine's name when it binds every interface)."""
    if settings.peer_url:
        return settings.peer_url.rstrip("/")
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{settings.port}"


def build_elector(settings: Settings, db: Database) -> Elector | None:
    """The controller lease's elector when several servers may share the database (not on
    SQLite, where one server is alone)."""
    if db.is_sqlite:
        return None
    address = peer_url(settings)
    return Elector(SqlLeases(db), holder_name(address), address, holder_gone=holder_gone)


class Cluster:
    """One server's part in a group of servers sharing a database (or, on SQLite, alone)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        releases: Releases,
        accounts: Accounts,
        controller: Controller,
        routes: RouteTable,
        owner: str = "",
        on_plugin_removed: Callable[[int, bool], None] | None = None,
        elector: Elector | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.releases = releases
        self.accounts = accounts
        self.controller = controller
        self.routes = routes
        self.secret = accounts.signing_secret()
        # None on SQLite (one server); else built first (build_elector) so the controller
        # could take its gate and fence at construction
        self.elector = elector
        self.leadership = asyncio.Event()  # set once this server leads (at once on SQLite)
        # forget cached lookups of a plugin another server deleted (True) or disabled
        self.on_plugin_removed = on_plugin_removed
        self.feed: ChangeFeed | None = None
        self._last_event = 0
        self._forward: dict[int, ForwardGroup] = {}
        self.peers = PeerCalls(
            self.secret,
            leader_address=self._leader_address,
            local_group=lambda rid: self.controller.groups.get(rid),
            leading=self.leading,
            wanted=self._routes_release,
            hold_s=settings.restore_hold_s,
            call_timeout_s=settings.replica_call_timeout_s,
        )
        self.direct: DirectReplicas | None = None
        if settings.workers > 1 and settings.backend == "local":  # reach the replicas ourselves
            self.direct = DirectReplicas(settings.replicas_dir, settings.replica_call_timeout_s)
            self.peers.direct = self.direct.call
        # a follower on a joined Ray cluster calls the leader's Serve replicas itself; with a
        # Ray the leader owns, no other server can reach them: forward (plughost.cluster.ray_follow)
        self.ray_follow: RayFollower | None = None
        if not db.is_sqlite and settings.backend == "ray" and settings.ray_address.strip():
            self.ray_follow = RayFollower(
                settings.ray_address.strip(), owner, settings.replica_call_timeout_s
            )
            self.peers.direct = self.ray_follow.call
        if self.elector is not None:
            self.elector.on_elected = self._elected
            self.elector.on_lost = self._lost

    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def _routes_release(self, release_id: int) -> bool:
        """Whether calls to the release should wait for a server to run it."""
        if release_id in self._forward:
            return True  # a follower's route, or one a takeover is bringing back
        if not self.leading():
            return False
        c = self.controller
        return release_id in c.groups or release_id in c.tasks or c.restores.restoring(release_id)

    def _leader_address(self) -> str | None:
        return self.elector.leader_address() if self.elector is not None else None

    # -- start and stop ---------------------------------------------------------------------
    async def start(self) -> None:
        """Take the lease if free (the first server leads at once), build the follower's
        routes, then keep both going in the background."""
        if self.elector is None:
            return
        await self.elector.step()
        self._last_event = await asyncio.to_thread(self._max_event)
        await self._apply(Changes(full=True))
        if not self.leading():  # a follower restores nothing: an unknown route is a 404
            self.controller.restores.scanned()  # (a leader's first tick says so itself)
        dsn = make_url(self.db.url).set(drivername="postgresql")
        self.feed = ChangeFeed(dsn.render_as_string(hide_password=False), self._apply)
        self.feed.start()
        self.elector.start()

    async def stop(self) -> None:
        if self.elector is None:
            return
        await self.elector.stop()  # first: the next leader takes over at once
        if self.feed is not None:
            await self.feed.stop()
        await self.peers.close()
        if self.direct is not None:
            await self.direct.close()
        if self.ray_follow is not None:
            await self.ray_follow.close()

    async def step_down(self) -> None:
        """Let a successor run the controller now (a takeover, plughost.server.handover): a leader
        gives its lease up at once and stops electing (a follower goes on following); on
        SQLite, the home's lock goes, so the successor may open the same file. Routes and
        replicas keep serving. :meth:`rejoin` undoes it."""
        if self.elector is not None and self.leading():
            await self.elector.stop()
        unlock_sqlite_home()

    async def rejoin(self) -> None:
        """After :meth:`step_down`, when no successor took over: the SQLite home's lock
        again (unless another server took it meanwhile) and electing again."""
        if not sqlite_home_locked():
            with contextlib.suppress(RuntimeError):  # another server holds it now
                await asyncio.to_thread(lock_sqlite_home, self.settings)
        if self.elector is not None:
            self.elector.start()

    async def until_leading(self) -> None:
        """Return once this server runs the controller (never, on a follower that stays one)."""
        if self.elector is None:
            return
        await self.leadership.wait()

    def _elected(self, _epoch: int) -> None:
        self.controller.backend.build()  # the replicas are ours from now on
        self.leadership.set()
        if self.ray_follow is not None:  # the replicas are ours now: the backend calls them
            follow, self.ray_follow = self.ray_follow, None
            self.peers.direct = None
            self._closing = asyncio.create_task(follow.close(), name="plughost-ray-unfollow")
        task = asyncio.create_task(self._take_over(), name="plughost-takeover")
        self._takeover = task  # keep a reference until it ends

    async def _take_over(self) -> None:
        """The first tick registers the restores of every deployed release; then the routes
        that forwarded to the old leader go, so calls and status see those restores (calls
        wait for the replicas, status says `being restored`) as after a restart."""
        try:
            await self.controller.tick()
        finally:
            self.routes.drop_where(lambda route: isinstance(route.group, ForwardGroup))
            self._forward = {}

    def _lost(self) -> None:
        """Fenced already (no write of ours lands); stop running replicas and routing
        through a controller we no longer own: end the process cleanly."""
        log.error(
            "stopping this server: it lost the controller lease while running; restart it "
            "(it comes back as a follower)"
        )
        os.kill(os.getpid(), signal.SIGTERM)

    # -- applying other servers' writes -----------------------------------------------------
    async def _apply(self, changes: Changes) -> None:
        if changes.keys:
            self.accounts.forget_cached()
        if changes.lease and self.elector is not None and self.elector.epoch is None:
            self.elector.leader = await asyncio.to_thread(
                self.elector.leases.read, self.elector.name
            )
        for pk, deleted in changes.plugins.items():
            if self.on_plugin_removed is not None:
                self.on_plugin_removed(pk, deleted)
        ids = set(changes.releases)
        if changes.full:
            ids |= await asyncio.to_thread(self._events_since)
        if ids or changes.aliases or changes.full or changes.plugins:
            # routes first: the status endpoint reads a deployed release without a route
            # as one being restored
            if self.leading():
                self.controller.wake()
                await self._drop_stale_forwards()
            else:
                await self._rebuild_follower_routes()
        for rid in sorted(ids):
            await asyncio.to_thread(self.releases.refresh, rid)

    def _max_event(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.max(ReleaseEvent.id))) or 0)

    def _events_since(self) -> set[int]:
        with self.db.session() as s:
            rows = s.execute(
                select(ReleaseEvent.id, ReleaseEvent.release_id).where(
                    ReleaseEvent.id > self._last_event
                )
            ).all()
        if rows:
            self._last_event = max(self._last_event, max(int(r[0]) for r in rows))
        return {int(r[1]) for r in rows}

    async def _rebuild_follower_routes(self) -> None:
        deployed = await asyncio.to_thread(self.releases.with_status, {Status.DEPLOYED})
        aliases = await asyncio.to_thread(self.releases.aliases)
        self._forward = {r.id: self._forward_group(r) for r in deployed}
        table = follower_routes(deployed, aliases, lambda r: self._forward[r.id])
        self.routes.replace_all(table)

    def _forward_group(self, rel: ReleaseView) -> ForwardGroup:
        group = self._forward.get(rel.id)
        if group is None:
            spec = forward_spec(deployment_name_for(rel.plugin_id), rel.id, rel.namespace_id)
            group = ForwardGroup(
                spec, self.peers, lambda s: self.routes.lookup(s.namespace_id, s.deployment_name)
            )
        return group

    async def _drop_stale_forwards(self) -> None:
        """Once leading: forwarded routes of releases no longer deployed go (the controller
        replaces the others as it brings their replicas up)."""
        if not self._forward:
            return
        deployed = {
            r.id for r in await asyncio.to_thread(self.releases.with_status, {Status.DEPLOYED})
        }
        self.routes.drop_where(
            lambda route: isinstance(route.group, ForwardGroup) and route.release_id not in deployed
        )


def holder_name(address: str) -> str:
    """This process as a lease holder: address, machine, pid, process start time, a nonce."""
    pid = os.getpid()
    started = process_start_time(pid) or 0
    return f"{address}#{socket.gethostname()}#{pid}#{started}#{uuid.uuid4().hex[:8]}"


def holder_gone(holder: str) -> bool:
    """Whether ``holder`` (see :func:`holder_name`) is a process of this machine that no
    longer runs; a holder of another machine, or unreadable, is never taken for dead."""
    parts = holder.split("#")
    if len(parts) != 5 or parts[1] != socket.gethostname():
        return False
    try:
        pid, started = int(parts[2]), int(parts[3])
    except ValueError:
        return False
    return pid != os.getpid() and process_start_time(pid) != started

