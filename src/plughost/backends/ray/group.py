"""One release's Serve application as a replica group, and Serve's status as the groups
read it (:class:`StatusBoard`). The backend that starts them: :mod:`.ray_serve`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ray.exceptions import RayActorError

from plughost.backends.base import (
    CallFailed,
    GroupHealth,
    GroupSnapshot,
    GroupSpec,
    ReplicaGroup,
    Unavailable,
    plain_snapshot,
)
from plughost.backends.client import DEADLINE_GRACE_S
from plughost.backends.ray.direct import DirectSet
from plughost.backends.ray.options import AppState
from plughost.backends.ray.session import ServeSession
from plughost.backends.stream import CallStream, ListStream
from plughost.errors import DeadlineExceeded

if TYPE_CHECKING:
    from plughost.backends.ray.serve import RayBackend

log = logging.getLogger("plughost.backend.ray")

FAIL_AFTER_S = 10.0  # replicas failing to start this long (Serve retries meanwhile) = failed

Blocking = Callable[..., Awaitable[Any]]


class StatusBoard:
    """Serve's application states; concurrent callers share one fetch."""

    def __init__(self, session: ServeSession, run: Blocking) -> None:
        self.session = session
        self._run = run
        self.apps: dict[str, AppState] = {}
        self.fetched_at = 0.0  # monotonic time the last snapshot's fetch began
        self._lock = asyncio.Lock()

    async def fresh(self) -> dict[str, AppState]:
        """A snapshot fetched after this call began."""
        asked = time.monotonic()
        async with self._lock:
            if self.fetched_at >= asked:
                return self.apps
            began = time.monotonic()
            self.apps = await self._run(self.session.status)
            self.fetched_at = began
            return self.apps


class _ReplicaDied(Exception):
    """The replica a call was routed to died; another one may answer."""


class RayReplicaGroup(ReplicaGroup):
    """One release's Serve application, reached through its deployment handle."""

    def __init__(
        self, spec: GroupSpec, app: str, backend: RayBackend, handle: Any, packages: list[str]
    ) -> None:
        self.spec = spec
        self.app = app
        self.backend = backend
        self.packages = packages
        self._handle = handle
        self._health_handle = handle.options(method_name="health")
        self._timeout = backend.settings.replica_call_timeout_s
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._stopped = False
        self._started = time.monotonic()
        self._bad_since: float | None = None
        self.direct: DirectSet = backend.direct_set(app)

    # -- calls ------------------------------------------------------------------------------
    async def call_body(self, body: bytes, deadline_s: float | None = None) -> bytes | CallStream:
        """A raw ``{"inputs", "parameters"}`` body in, the result's JSON out (a CallStream
        when the plugin streams).

        A call whose replica died under it is sent once more (Serve routes it to a live
        replica); a second death, a timeout or no replica at all is Unavailable. Through
        Serve's handle (no direct channel yet) a stream arrives whole."""
        if self._stopping:
            raise Unavailable(f"{self.spec.deployment_name} is stopping")
        self._in_flight += 1
        self._idle.clear()
        try:
            if self.direct.workers:
                return await self.direct.call_body(body, deadline_s)
            # no worker reachable directly (yet): through Serve's handle, the actor passes it on
            try:
                reply = await self._request(self._handle, body, deadline_s)
            except _ReplicaDied as exc:
                log.warning("a replica of %s died during a call; retrying: %s", self.app, exc)
                try:
                    reply = await self._request(self._handle, body, deadline_s)
                except _ReplicaDied as again:
                    raise Unavailable(f"replica died during the call: {again}") from again
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        if reply[0] is True:
            return bytes(reply[1])
        if reply[0] == "stream":
            return ListStream([bytes(item) for item in reply[1]])
        if reply[1] == DeadlineExceeded.error_type:
            raise DeadlineExceeded(str(reply[2]))
        raise CallFailed(str(reply[1]), str(reply[2]))

    async def _request(self, handle: Any, *args: Any) -> Any:
        response = handle.remote(*args)
        timeout = self._timeout
        if len(args) > 1 and args[1] is not None:  # a call with a deadline: the actor enforces it
            timeout = float(args[1]) + DEADLINE_GRACE_S
        try:
            async with asyncio.timeout(timeout):
                return await response
        except TimeoutError:
            response.cancel()
            raise Unavailable(f"no reply within {timeout:g} s") from None
        except RayActorError as exc:
            raise _ReplicaDied(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from exc
        except asyncio.CancelledError:
            response.cancel()
            raise
        except Exception as exc:  # Serve's own refusals: no replica, back-pressure, ...
            raise Unavailable(f"{type(exc).__name__}: {exc}") from exc

    async def health(self) -> bool:
        """Every connected worker answers a health call (Serve's own status is not waited
        for: a worker that answers is serving); without workers, Serve's status and a
        health call through the handle."""
        if self.direct.workers:
            return await self.direct.health()
        state = (await self.backend.board.fresh()).get(self.app)
        if state is None or state.status != "RUNNING":
            return False
        try:
            return bool(await self._request(self._health_handle))
        except (Unavailable, _ReplicaDied):
            return False

    # -- state ------------------------------------------------------------------------------
    @property
    def desired(self) -> int:
        sc = self.spec.serve_config
        if sc.get("num_replicas") is None and (
            sc.get("max_replicas") is not None or sc.get("target_ongoing_requests") is not None
        ):
            return max(1, int(sc.get("min_replicas") or 1))
        return self.spec.num_replicas

    def observe(self) -> GroupHealth:
        """From the last status snapshot: failed once replicas have kept failing to start
        (or the application vanished) for FAIL_AFTER_S."""
        board = self.backend.board
        if board.fetched_at <= self._started:
            return GroupHealth(desired=self.desired, ready=max(self.direct.ready, 1))
        state = board.apps.get(self.app)
        if state is None:
            problem: str | None = f"the Serve application {self.app} is gone"
        elif state.startup_failing:
            problem = state.error or "replicas keep failing to start"
        else:
            problem = None
        ready = state.running if state is not None else 0
        if self.direct.infos:
            ready = self.direct.ready
        if problem is None:
            self._bad_since = None
            return GroupHealth(desired=self.desired, ready=ready)
        now = time.monotonic()
        self._bad_since = self._bad_since or now
        failed = now - self._bad_since >= FAIL_AFTER_S
        return GroupHealth(desired=self.desired, ready=ready, failed=failed, error=problem)

    def snapshot(self) -> GroupSnapshot:
        """Serve replaces dead replicas and scales them itself: no history of our own."""
        return plain_snapshot(self.observe())

    async def stop(self, drain_timeout_s: float) -> None:
        """Let in-flight calls finish (bounded), then delete the application."""
        if self._stopped:
            return
        self._stopping = True
        if self._in_flight:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, drain_timeout_s)):
                    await self._idle.wait()
        self._stopped = True
        await self.backend.remove(self.app)
