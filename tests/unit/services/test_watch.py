"""The status watch: one body per release change of the watched plugin, until a final one.

Release writes go through the real release door (their board calls the watch); the status
bodies come from a fake status service whose answers the tests steer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from plughost.control.restore import Restores
from plughost.domain.scope import PluginScope
from plughost.domain.states import Status, wire_status
from plughost.persistence.db import Database
from plughost.persistence.releases import Releases
from plughost.persistence.tables import Plugin
from plughost.services.watch import StatusWatches

from .conftest import NS_A, add_plugin

T = TypeVar("T")


@dataclass
class FakeController:
    restores: Restores = field(default_factory=Restores)


@dataclass
class FakeStatus:
    """The status service's reads as the watch uses them, with knobs: the ETA it shows,
    whether the in-memory read answers (else the watch reads again), and call counts."""

    releases: Releases
    controller: FakeController = field(default_factory=FakeController)
    pks: dict[str, int] = field(default_factory=dict)
    eta: int = 30
    note: str = ""
    memory_answers: bool = True
    reads: int = 0
    memory_reads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _body(self, scope: PluginScope, plugin_id: str) -> dict[str, Any]:
        assert scope.namespace_id is not None
        view = self.releases.latest(scope.namespace_id, self.pks[plugin_id])
        assert view is not None
        return {
            "plugin_id": plugin_id,
            "status": wire_status(view.status),
            "estimated_completion_seconds": self.eta,
            "note": self.note,
        }

    def status(self, scope: PluginScope, plugin_id: str) -> dict[str, Any]:
        with self._lock:
            self.reads += 1
        return self._body(scope, plugin_id)

    def cached_status(self, scope: PluginScope, plugin_id: str) -> dict[str, Any] | None:
        with self._lock:
            self.memory_reads += 1
        return self._body(scope, plugin_id) if self.memory_answers else None


@pytest.fixture
def releases(db: Database) -> Releases:
    return Releases(db)


@pytest.fixture
def source(releases: Releases) -> FakeStatus:
    return FakeStatus(releases)


@pytest.fixture
def watches(source: FakeStatus) -> StatusWatches:
    return StatusWatches(source)  # type: ignore[arg-type]


def watched(db: Database, source: FakeStatus, name: str = "embed") -> Plugin:
    plugin = add_plugin(db, NS_A, name)
    source.pks[plugin.plugin_id] = plugin.id
    return plugin


def run(body: Awaitable[T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(10):
            return await body

    return asyncio.run(bounded())


async def rest(stream: AsyncIterator[dict[str, Any] | None]) -> list[str | None]:
    """The statuses of what the watch still sends (None: a keepalive)."""
    return [None if body is None else body["status"] async for body in stream]


def test_each_step_of_a_rollout_is_sent_once_and_the_watch_ends_when_final(
    db: Database, source: FakeStatus, watches: StatusWatches, releases: Releases
) -> None:
    plugin = watched(db, source)
    rid = releases.enqueue("ns_a", plugin, "queued").id

    async def body() -> list[str | None]:
        stream = watches.watch(NS_A, plugin.plugin_id, plugin.id)
        first = await anext(stream)
        assert first is not None and first["status"] == "queued"
        # all three writes land before the watch reads again: each body was taken at its write
        releases.move(rid, Status.QUEUED, Status.PENDING)
        releases.move(rid, Status.PENDING, Status.IN_PROGRESS)
        releases.move(rid, Status.IN_PROGRESS, Status.DEPLOYED)
        return await rest(stream)

    assert run(body()) == ["pending", "in_progress", "deployed"]
    assert source.reads == 1  # only the first body was read; the others came with the writes


def test_a_change_of_only_the_eta_is_not_sent(
    db: Database, source: FakeStatus, watches: StatusWatches, releases: Releases
) -> None:
    plugin = watched(db, source)
    rid = releases.enqueue("ns_a", plugin, "queued").id

    async def body() -> list[str | None]:
        stream = watches.watch(NS_A, plugin.plugin_id, plugin.id)
        await anext(stream)
        source.eta = 12
        releases.note(rid, Status.QUEUED, "still queued")  # a write, same essence
        source.note = "starting"
        releases.move(rid, Status.QUEUED, Status.PENDING)
        releases.move(rid, Status.PENDING, Status.FAILED, error="boom")
        return await rest(stream)

    assert run(body()) == ["pending", "failed"]


def test_a_body_memory_cannot_answer_is_read_again(
    db: Database, source: FakeStatus, watches: StatusWatches, releases: Releases
) -> None:
    plugin = watched(db, source)
    rid = releases.enqueue("ns_a", plugin, "queued").id
    source.memory_answers = False

    async def body() -> list[str | None]:
        stream = watches.watch(NS_A, plugin.plugin_id, plugin.id)
        await anext(stream)
        releases.move(rid, Status.QUEUED, Status.NOT_DEPLOYED)
        return await rest(stream)

    assert run(body()) == ["not_deployed"]
    assert source.reads == 2 and source.memory_reads == 1


def test_another_plugins_changes_do_not_reach_the_watch(
    db: Database, source: FakeStatus, watches: StatusWatches, releases: Releases
) -> None:
    plugin = watched(db, source)
    other = watched(db, source, "other")
    rid = releases.enqueue("ns_a", plugin, "queued").id
    theirs = releases.enqueue("ns_a", other, "queued").id

    async def body() -> list[str | None]:
        stream = watches.watch(NS_A, plugin.plugin_id, plugin.id)
        await anext(stream)
        releases.move(theirs, Status.QUEUED, Status.PENDING)
        releases.move(theirs, Status.PENDING, Status.FAILED)
        assert source.memory_reads == 0
        releases.move(rid, Status.QUEUED, Status.NOT_DEPLOYED)
        return await rest(stream)

    assert run(body()) == ["not_deployed"]
    assert source.memory_reads == 1


def test_the_end_of_a_restore_is_sent_although_no_release_row_changed(
    db: Database, source: FakeStatus, watches: StatusWatches, releases: Releases
) -> None:
    plugin = watched(db, source)
    rid = releases.enqueue("ns_a", plugin, "queued").id
    releases.move(rid, Status.QUEUED, Status.PENDING)
    view = releases.get(rid)
    assert view is not None

    async def body() -> list[str | None]:
        stream = watches.watch(NS_A, plugin.plugin_id, plugin.id)
        assert (await anext(stream) or {})["note"] == ""
        restores = source.controller.restores
        restores.begin(view)
        source.note = "restored"
        restores.end(rid)
        changed = await anext(stream)
        assert changed is not None and changed["note"] == "restored"
        releases.move(rid, Status.PENDING, Status.FAILED)
        return await rest(stream)

    assert run(body()) == ["failed"]


def test_a_plugin_already_final_gets_one_body_and_no_watcher_is_left(
    db: Database, source: FakeStatus, watches: StatusWatches, releases: Releases
) -> None:
    plugin = watched(db, source)
    rid = releases.enqueue("ns_a", plugin, "queued").id
    releases.move(rid, Status.QUEUED, Status.NOT_DEPLOYED)

    async def body() -> list[str | None]:
        return await rest(watches.watch(NS_A, plugin.plugin_id, plugin.id))

    assert run(body()) == ["not_deployed"]
    releases.enqueue("ns_a", plugin, "queued again")
    assert source.memory_reads == 0  # nobody watches any more


def test_two_watchers_each_get_every_change_and_a_closed_one_stops_listening(
    db: Database, source: FakeStatus, watches: StatusWatches, releases: Releases
) -> None:
    plugin = watched(db, source)
    rid = releases.enqueue("ns_a", plugin, "queued").id

    async def body() -> list[str | None]:
        one = watches.watch(NS_A, plugin.plugin_id, plugin.id)
        two = watches.watch(NS_A, plugin.plugin_id, plugin.id)
        await anext(one)
        await anext(two)
        releases.move(rid, Status.QUEUED, Status.PENDING)
        assert source.memory_reads == 2
        assert (await anext(one) or {})["status"] == "pending"
        await one.aclose()  # the client went away
        releases.move(rid, Status.PENDING, Status.IN_PROGRESS)
        assert source.memory_reads == 3
        releases.move(rid, Status.IN_PROGRESS, Status.DEPLOYED)
        return await rest(two)

    assert run(body()) == ["pending", "in_progress", "deployed"]
