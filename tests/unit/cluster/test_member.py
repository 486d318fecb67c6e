"""A server's part among several (plughost.cluster.member) as a takeover uses it:
``step_down`` lets a successor take the controller at once (the lease, or on SQLite the
home's lock) and ``rejoin`` takes it back when no successor did; an elector stopped that
way starts again."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from test_controller import Harness
from test_election import FakeLeases, elector

from plughost.cluster.member import Cluster
from plughost.config import Settings
from plughost.server.home_lock import lock_sqlite_home, sqlite_home_locked, unlock_sqlite_home
from plughost.services.accounts import Accounts


@pytest.fixture
def unlocked() -> Iterator[None]:
    """Whatever a test locks, the next test starts with the home lock free."""
    unlock_sqlite_home()
    yield
    unlock_sqlite_home()


def _cluster(h: Harness) -> Cluster:
    return Cluster(h.settings, h.db, h.releases, Accounts(h.db), h.controller, h.routes)


def _lock_path(settings: Settings) -> Path:
    database = make_url(settings.resolved_database_url).database
    assert database is not None
    return Path(database).with_suffix(".serve.lock")


def test_step_down_frees_the_sqlite_home_for_a_successor_and_rejoin_takes_it_back(
    harness: Callable[..., Harness], unlocked: None
) -> None:
    h = harness()
    cluster = _cluster(h)
    lock_sqlite_home(h.settings)
    with pytest.raises(RuntimeError, match="already runs on the SQLite database"):
        lock_sqlite_home(h.settings)  # a second server on the same file is refused
    asyncio.run(cluster.step_down())
    assert not sqlite_home_locked()
    asyncio.run(cluster.rejoin())
    assert sqlite_home_locked()
    with pytest.raises(RuntimeError):
        lock_sqlite_home(h.settings)


def test_rejoin_leaves_the_sqlite_home_to_a_successor_that_took_it(
    harness: Callable[..., Harness], unlocked: None
) -> None:
    h = harness()
    cluster = _cluster(h)
    lock_sqlite_home(h.settings)
    asyncio.run(cluster.step_down())
    with _lock_path(h.settings).open("a+") as successor:
        fcntl.flock(successor.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        asyncio.run(cluster.rejoin())  # no error: the successor's lock stands
        assert not sqlite_home_locked()


def test_a_stopped_elector_started_again_leads_again_with_a_new_epoch() -> None:
    leases = FakeLeases()
    a, events = elector(leases, "a")

    async def scenario() -> None:
        a.start()
        await asyncio.sleep(0.01)
        assert a.is_leader()
        await a.stop()  # a step-down: the lease goes at once
        assert not a.is_leader() and leases.row is not None
        assert leases.row["expires"] <= leases.now
        a.start()
        await asyncio.sleep(0.01)
        assert a.is_leader() and a.epoch == 2
        await a.stop()

    asyncio.run(scenario())
    assert events == ["elected 1", "elected 2"]
