"""Calls from a follower on the Ray backend straight to the leader's Serve replicas.

On a joined cluster (``PLUGHOST_RAY_ADDRESS``) every server of one database shares the owner
tag (derived from the database's signing secret, see ``plughost.server.wiring.backend_owner``), so
the leader's replica directory actor (:mod:`plughost.backends.ray.directory`) has a name every
follower knows. A follower joins the cluster as a plain driver (it deploys nothing, starts no
Serve and touches no application), looks the directory up, follows its listing and connects
to each worker as the leader does (:class:`~plughost.backends.ray.direct.DirectSet`: the Unix
socket on the same node, the HMAC TCP relay otherwise). A release with no connected worker
yet answers ``None`` and the caller forwards to the leader (:mod:`plughost.cluster.forward`).

The follower owns nothing there: it never unregisters or kills a replica, never writes to the
directory and never deletes it. A worker whose connection drops or whose call times out is
only dropped here; the leader's own connection decides whether it is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from plughost.backends.ray.direct import DirectSet, DirectTimeout
from plughost.backends.ray.directory import NAMESPACE, directory_name
from plughost.backends.ray.options import release_of_app
from plughost.backends.stream import CallStream
from plughost.errors import Unavailable

log = logging.getLogger("plughost.ray_follow")

POLL_S = 10.0  # long-poll window of the directory
RETRY_S = 1.0  # wait before joining or looking the directory up again


class FollowerSet(DirectSet):
    """A DirectSet that never acts on replicas it does not own."""

    def __init__(self, app: str, node_id: str, call_timeout_s: float) -> None:
        super().__init__(app, node_id, call_timeout_s)
        self.sink = None  # the leader follows the workers' output, not us

    def _lost(self, rid: str, reason: str) -> None:
        worker = self.workers.pop(rid, None)
        if worker is not None:
            self._given_up.add(rid)
            log.info("follower: worker of %s replica %s dropped: %s", self.app, rid, reason)
            self.changed.set()

    def _timed_out(self, rid: str, timeout_s: float, is_call: bool) -> BaseException:
        if not is_call:
            return Unavailable(f"no reply within {timeout_s:g} s")
        return DirectTimeout(f"no reply within {timeout_s:g} s")


def _join(address: str) -> str:
    """Join the cluster as a driver (no Serve); the id of this process's node."""
    import ray

    ray.init(
        address=address,
        logging_level=logging.WARNING,
        log_to_driver=False,
        ignore_reinit_error=True,
    )
    return str(ray.get_runtime_context().get_node_id())


def _directory(owner: str) -> Any:
    """The leader's directory actor; ValueError while it does not exist yet."""
    import ray

    return ray.get_actor(directory_name(owner), namespace=NAMESPACE)


class RayFollower:
    """The leader's Serve replicas, by release, reached without the leader."""

    def __init__(self, address: str, owner: str, call_timeout_s: float) -> None:
        self.address = address
        self.owner = owner
        self.call_timeout_s = call_timeout_s
        self.node_id = ""
        self.sets: dict[int, FollowerSet] = {}  # release id -> its application's workers
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def call(
        self, release_id: int, body: bytes, deadline_s: float | None = None
    ) -> bytes | CallStream | None:
        """A worker's reply, or None when no worker of the release is connected (the caller
        forwards then). A worker that went away under the call was tried once more."""
        self._ensure_started()
        direct = self.sets.get(release_id)
        if direct is None or direct.ready == 0:
            return None
        try:
            return await direct.call_body(body, deadline_s)
        except Unavailable:
            if direct.ready:
                raise
            return None  # every worker went away meanwhile: the leader knows more

    def _ensure_started(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="plughost-ray-follow")

    async def _run(self) -> None:
        directory = None
        while directory is None:
            try:
                if not self.node_id:
                    self.node_id = await asyncio.to_thread(_join, self.address)
                    log.info("follower: joined Ray at %s to call replicas directly", self.address)
                directory = await asyncio.to_thread(_directory, self.owner)
            except asyncio.CancelledError:
                raise
            except Exception:  # no cluster yet, or no directory yet: try again
                log.debug("follower: Ray directory not reachable yet", exc_info=True)
                await asyncio.sleep(RETRY_S)
        version = -1
        while True:
            try:
                version, listing = await directory.changes.remote(version, POLL_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("follower: reading the replica directory failed", exc_info=True)
                await asyncio.sleep(RETRY_S)
                with contextlib.suppress(Exception):  # a new leader made a new one
                    directory = await asyncio.to_thread(_directory, self.owner)
                continue
            self._update(listing)

    def _update(self, listing: dict[str, dict[str, dict[str, Any]]]) -> None:
        seen: set[int] = set()
        for app, workers in listing.items():
            release_id = release_of_app(app, self.owner)
            if release_id is None:
                continue
            seen.add(release_id)
            direct = self.sets.get(release_id)
            if direct is None:
                direct = self.sets[release_id] = FollowerSet(app, self.node_id, self.call_timeout_s)
            direct.update(workers)
        for release_id in [r for r in self.sets if r not in seen]:
            self.sets.pop(release_id).close()

    async def close(self) -> None:
        """Stop following (this server now leads, or stops); Ray stays joined: a leader's
        backend uses the same connection."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        for direct in self.sets.values():
            direct.close()
        self.sets.clear()
