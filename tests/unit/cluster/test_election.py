"""The controller lease and its fencing (plughost.cluster.election) against a fake lease table
with its own clock: who leads, takeover after expiry, and that an old leader's writes are
refused once another server took over."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plughost.cluster.election import Elector, LeaseInfo, LeaseLost


class FakeLeases:
    """The leases table of plughost.cluster.leases, in memory, on a settable clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.row: dict[str, Any] | None = None
        self.down = False  # the database is unreachable

    def _up(self) -> None:
        if self.down:
            raise ConnectionError("database unreachable")

    def acquire(self, name: str, holder: str, address: str, ttl_s: float) -> int | None:
        self._up()
        if self.row is not None and self.row["expires"] > self.now:
            return None
        epoch = (self.row["epoch"] if self.row else 0) + 1
        self.row = {
            "holder": holder,
            "epoch": epoch,
            "address": address,
            "expires": self.now + ttl_s,
        }
        return epoch

    def reclaim(self, name: str, holder: str, address: str, epoch: int, ttl_s: float) -> int | None:
        self._up()
        row = self.row
        if row is None or row["epoch"] != epoch or row["address"] != address:
            return None
        self.row = {**row, "holder": holder, "epoch": epoch + 1, "expires": self.now + ttl_s}
        return epoch + 1

    def renew(self, name: str, holder: str, epoch: int, ttl_s: float) -> bool:
        self._up()
        row = self.row
        if row is None or row["holder"] != holder or row["epoch"] != epoch:
            return False
        row["expires"] = self.now + ttl_s
        return True

    def release(self, name: str, holder: str, epoch: int) -> None:
        self._up()
        if self.row and self.row["holder"] == holder and self.row["epoch"] == epoch:
            self.row["expires"] = self.now

    def read(self, name: str) -> LeaseInfo | None:
        self._up()
        row = self.row
        if row is None:
            return None
        return LeaseInfo(row["holder"], row["epoch"], row["address"], row["expires"] <= self.now)

    def check(self, session: Any, name: str, holder: str, epoch: int) -> None:
        self._up()
        row = self.row
        if (
            row is None
            or row["holder"] != holder
            or row["epoch"] != epoch
            or row["expires"] <= self.now
        ):
            raise LeaseLost("fenced")


class Clock:
    def __init__(self, leases: FakeLeases) -> None:
        self.leases = leases

    def __call__(self) -> float:
        return self.leases.now


def elector(
    leases: FakeLeases, name: str, address: str = "", in_use: bool = True
) -> tuple[Elector, list[str]]:
    events: list[str] = []
    e = Elector(
        leases,
        name,
        address or f"http://{name}",
        ttl_s=3.0,
        clock=Clock(leases),
        holder_gone=lambda _holder: not in_use,
    )
    e.on_elected = lambda epoch: events.append(f"elected {epoch}")
    e.on_lost = lambda: events.append("lost")
    return e, events


def step(*electors: Elector) -> None:
    async def go() -> None:
        for e in electors:
            await e.step()

    asyncio.run(go())


def test_the_first_server_leads_and_the_second_follows_it() -> None:
    leases = FakeLeases()
    a, a_events = elector(leases, "a")
    b, b_events = elector(leases, "b")
    step(a, b)
    assert a.is_leader() and a_events == ["elected 1"]
    assert not b.is_leader() and b_events == []
    assert b.leader_address() == "http://a" and a.leader_address() == "http://a"
    a.fence(None)  # the leader's writes pass
    with pytest.raises(LeaseLost):
        b.fence(None)  # a follower never writes as the controller


def test_a_renewing_leader_keeps_the_lease_past_its_ttl() -> None:
    leases = FakeLeases()
    a, _ = elector(leases, "a")
    b, b_events = elector(leases, "b")
    step(a)
    for _ in range(10):
        leases.now += 1.0
        step(a, b)
    assert a.is_leader() and b_events == []


def test_a_dead_leader_is_replaced_after_the_ttl_with_a_new_epoch_that_fences_it() -> None:
    leases = FakeLeases()
    a, a_events = elector(leases, "a")
    b, b_events = elector(leases, "b")
    step(a, b)
    leases.now += 2.9  # a stopped renewing (frozen or killed): not expired yet
    step(b)
    assert b_events == []
    leases.now += 0.2
    step(b)
    assert b_events == ["elected 2"] and b.is_leader()
    # a, frozen until now, still believes it holds epoch 1: its own clock stops it acting...
    assert not a.is_leader()
    # ...and the database refuses its writes whatever it believes
    with pytest.raises(LeaseLost):
        a.fence(None)
    b.fence(None)
    step(a)  # its next renewal learns it lost
    assert a_events == ["elected 1", "lost"] and a.epoch is None
    assert a.leader_address() == "http://b" or a.leader is None


def test_a_leader_that_cannot_reach_the_database_stops_acting_once_its_lease_may_be_gone() -> None:
    leases = FakeLeases()
    a, a_events = elector(leases, "a")
    step(a)
    leases.down = True
    leases.now += 1.0
    step(a)  # renewal fails, but the lease is still ours for 2 s
    assert a.is_leader() and a_events == ["elected 1"]
    leases.now += 2.0
    assert not a.is_leader()  # the gate closes by our own clock, before any renewal says so
    step(a)
    assert a_events == ["elected 1", "lost"]


def test_a_clean_stop_releases_the_lease_for_an_immediate_takeover() -> None:
    leases = FakeLeases()
    a, _ = elector(leases, "a")
    b, b_events = elector(leases, "b")
    step(a, b)
    asyncio.run(a.stop())
    step(b)
    assert b_events == ["elected 2"]


def test_a_follower_rides_out_a_database_outage() -> None:
    leases = FakeLeases()
    a, _ = elector(leases, "a")
    b, b_events = elector(leases, "b")
    step(a, b)
    leases.down = True
    step(b)  # logged, still a follower
    assert b_events == [] and not b.is_leader()


def test_a_server_restarted_at_its_address_reclaims_its_dead_predecessors_lease_at_once() -> None:
    leases = FakeLeases()
    before, _ = elector(leases, "a-1", "http://host:8080")
    step(before)  # then SIGKILLed: its lease runs for 3 s more
    after, events = elector(leases, "a-2", "http://host:8080", in_use=False)
    step(after)
    assert events == ["elected 2"] and after.is_leader()
    with pytest.raises(LeaseLost):
        before.fence(None)


def test_a_live_server_at_that_address_or_another_address_is_not_taken_over_early() -> None:
    leases = FakeLeases()
    a, _ = elector(leases, "a-1", "http://host:8080")
    step(a)
    same, same_events = elector(leases, "a-2", "http://host:8080", in_use=True)
    other, other_events = elector(leases, "b", "http://other:8080", in_use=False)
    step(same, other)
    assert same_events == [] and other_events == [] and a.is_leader()


def test_holder_names_tell_a_dead_process_of_this_machine_from_a_live_one() -> None:
    import os
    import subprocess
    import sys

    from plughost.cluster.member import holder_gone, holder_name

    me = holder_name("http://h:1")
    assert not holder_gone(me)  # ourselves
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    parts = me.split("#")
    dead = "#".join([parts[0], parts[1], str(child.pid), "12345", parts[4]])
    assert holder_gone(dead)
    elsewhere = "#".join([parts[0], "another-machine", str(child.pid), "1", parts[4]])
    assert not holder_gone(elsewhere) and not holder_gone("garbage")
    from plughost.backends.local.registry import process_start_time

    parent = os.getppid()
    live = "#".join([parts[0], parts[1], str(parent), str(process_start_time(parent)), parts[4]])
    reused = "#".join([parts[0], parts[1], str(parent), "0", parts[4]])  # another process now
    assert not holder_gone(live) and holder_gone(reused)
