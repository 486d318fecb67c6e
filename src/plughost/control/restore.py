"""Releases being restored after a server start, and the calls that wait for them.

A deployed release has no replicas on a freshly started server until the controller brings
it back. Meanwhile its routes are not in the route table, but they are not "really not
deployed" either: a call for one of them waits (bounded) for the restore instead of a 404,
and one whose wait runs out gets a 503 with ``Retry-After``. Until the controller's first
pass has said which releases it restores, any unknown route waits for that pass first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from plughost.domain.ids import deployment_name_for
from plughost.domain.release import ReleaseView
from plughost.errors import ServiceUnavailableError

log = logging.getLogger("plughost.restore")


class RestoreHoldExpired(ServiceUnavailableError):
    """A call waited the whole hold for its route's restore."""

    def __init__(self, message: str, details: dict[str, object], retry_after_s: float) -> None:
        super().__init__(message, details, retry_after_s)


class Restores:
    """Route names (namespace, name) of releases under restore; one event per release."""

    def __init__(self) -> None:
        self._scanned = asyncio.Event()
        self._names: dict[tuple[str, str], set[int]] = {}
        self._done: dict[int, asyncio.Event] = {}
        self._release_names: dict[int, list[tuple[str, str]]] = {}
        self._views: dict[int, ReleaseView] = {}
        # called with the release when its restore ends: its status changes although no
        # release row does (the status watch listens)
        self.listeners: list[Callable[[ReleaseView], None]] = []

    # -- the controller's side ----------------------------------------------------------------
    def scanned(self) -> None:
        """The first reconcile pass has registered every restore it starts."""
        self._scanned.set()

    def begin(self, rel: ReleaseView) -> None:
        ns = rel.namespace_id
        names = [(ns, deployment_name_for(rel.plugin_id)), (ns, rel.plugin_id), (ns, rel.name)]
        self._release_names[rel.id] = names
        self._views[rel.id] = rel
        self._done[rel.id] = asyncio.Event()
        for key in names:
            self._names.setdefault(key, set()).add(rel.id)

    def end(self, release_id: int) -> None:
        """Restored (its routes are published), failed or cancelled: waiters look again."""
        for key in self._release_names.pop(release_id, []):
            ids = self._names.get(key)
            if ids is not None:
                ids.discard(release_id)
                if not ids:
                    del self._names[key]
        event = self._done.pop(release_id, None)
        if event is not None:
            event.set()
        view = self._views.pop(release_id, None)
        for listener in self.listeners if view is not None else ():
            try:
                listener(view)
            except Exception:  # a listener never breaks the controller
                log.exception("restore listener failed")

    def restoring(self, release_id: int) -> bool:
        return release_id in self._done

    def settled(self) -> bool:
        """The first pass ran and no restore is pending (a takeover waits for this before
        the old server stops taking connections)."""
        return self._scanned.is_set() and not self._done

    # -- the caller's side ---------------------------------------------------------------------
    async def hold(
        self, namespace_id: str, name: str, timeout_s: float, published: Callable[[], bool]
    ) -> bool:
        """Wait while ``name`` belongs to a release under restore and ``published()`` is
        False. True once it is published; False when nothing restores it (a real 404);
        RestoreHoldExpired when ``timeout_s`` runs out first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if not self._scanned.is_set():
            await self._wait(self._scanned, deadline - loop.time())
            if published():
                return True
        while not published():
            ids = self._names.get((namespace_id, name))
            if not ids:
                return False
            if loop.time() >= deadline:
                raise self._expired(namespace_id, name, timeout_s)
            events = [self._done[i] for i in ids if i in self._done]
            await self._wait_any(events, deadline - loop.time())
        return True

    @staticmethod
    async def _wait(event: asyncio.Event, timeout_s: float) -> None:
        if timeout_s > 0:
            try:
                async with asyncio.timeout(timeout_s):
                    await event.wait()
            except TimeoutError:
                pass

    @staticmethod
    async def _wait_any(events: list[asyncio.Event], timeout_s: float) -> None:
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, timeout=max(0.0, timeout_s), return_when="FIRST_COMPLETED")
        finally:
            for w in waiters:
                w.cancel()

    @staticmethod
    def _expired(namespace_id: str, name: str, timeout_s: float) -> RestoreHoldExpired:
        return RestoreHoldExpired(
            f"/inference/{namespace_id}/{name} is being restored after a server start and did "
            f"not answer within {timeout_s:g} s; retry later",
            {"namespace_id": namespace_id, "route": name},
            timeout_s,
        )
