"""The local backend (embedded default): each replica is its own OS process on this machine,
in a :class:`~.local_group.LocalReplicaGroup` per release.

The server's backend (built with ``live_releases``) starts replicas that outlive it: each
is recorded in ``<home>/replicas`` and writes its output to a file there, and a group
started for a release adopts the replicas an earlier server left running before it starts
the missing ones (:mod:`.local_adopt`). Without it (``plughost test``) replicas die with
the process that started them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import weakref
from pathlib import Path

from plughost.backends.base import Backend, GroupSpec
from plughost.backends.local.adopt import Adoption, LiveReleases
from plughost.backends.local.group import LocalReplicaGroup
from plughost.backends.local.pool import ReplicaPool
from plughost.backends.local.registry import ReplicaRegistry, socket_folder
from plughost.config import Settings
from plughost.domain.container import ContainerCalls
from plughost.sandbox.host import Sandbox

log = logging.getLogger("plughost.backend.local")


class LocalBackend(Backend):
    """Starts replica groups as local processes, each wrapped by ``sandbox`` when given."""

    name = "local"

    def __init__(
        self,
        settings: Settings,
        sandbox: Sandbox | None = None,
        live_releases: LiveReleases | None = None,
        container: ContainerCalls | None = None,
    ) -> None:
        """``live_releases``: the ids of the releases the database wants running; given, the
        replicas outlive this server and the ones an earlier server left are adopted.
        ``container``: answers plugin code's container calls (None: refused)."""
        self.settings = settings
        self.container = container
        self.sandbox = sandbox
        self.adoption: Adoption | None = None
        # Unix socket paths are limited to ~107 bytes, so they live in a short temp folder.
        if live_releases is not None:
            self.socket_dir = socket_folder(settings.resolved_home)
            self.adoption = Adoption(ReplicaRegistry(settings.replicas_dir), live_releases)
            with contextlib.suppress(RuntimeError):  # built on the server's loop: sweep now
                asyncio.get_running_loop()
                self.adoption.start_sweeper()
        else:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="plughost-"))
        self.groups: weakref.WeakSet[LocalReplicaGroup] = weakref.WeakSet()
        # pre-started sandboxed replicas a deploy claims (the server's backend only, and
        # only in bubblewrap: a member must not see the server's files before its claim)
        self.pool: ReplicaPool | None = None
        wraps = sandbox is not None and sandbox.wraps
        if self.adoption is not None and sandbox is not None and wraps and settings.replica_pool:
            self.pool = ReplicaPool(
                settings, sandbox, self.socket_dir, detached=True,
                registry=self.adoption.registry,
            )
            with contextlib.suppress(RuntimeError):  # built on the server's loop: fill now
                asyncio.get_running_loop()
                self.pool.start()

    @property
    def keeps_replicas_on_stop(self) -> bool:
        """A deliberate stop leaves the replicas running (PLUGHOST_KEEP_REPLICAS_ON_STOP)."""
        return self.adoption is not None and self.settings.keep_replicas_on_stop

    async def start(self, spec: GroupSpec) -> LocalReplicaGroup:
        if self.adoption is not None:
            self.adoption.rescan()
            self.adoption.start_sweeper()
        if self.pool is not None:
            self.pool.start()  # the first fill, when the backend was built off the loop
        group = LocalReplicaGroup(
            spec, self.settings, self.socket_dir, self.sandbox, self.adoption, self.container,
            self.pool,
        )
        self.groups.add(group)
        try:
            await group.start_all()
        except BaseException:
            self.groups.discard(group)
            raise
        return group

    async def shutdown(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        groups = list(self.groups)
        if self.keeps_replicas_on_stop:
            for group in groups:
                group.detach()
            log.info("left %d replica group(s) running for the next server", len(groups))
        else:
            await asyncio.gather(*(g.stop(2.0) for g in groups), return_exceptions=True)
        if self.pool is not None:
            self.pool.drop_root()
        if self.sandbox is not None:
            self.sandbox.close_cgroups()  # only what is empty: kept replicas keep theirs
        if self.adoption is None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.socket_dir)
            return
        await self.adoption.close(keep=self.keeps_replicas_on_stop)
        with contextlib.suppress(OSError):
            self.socket_dir.rmdir()  # shared with later servers on this home: only if empty
