"""Pieces of several servers on one database that need no database: parsing notifications,
a follower's route table, forwarded calls waiting through a leader change, peer signatures."""

from __future__ import annotations

import asyncio
import select
import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from plughost.backends.base import GroupHealth, GroupSnapshot, ReplicaGroup, plain_snapshot
from plughost.cluster.change_feed import Changes, follower_routes
from plughost.cluster.forward import (
    ForwardGroup,
    PeerCalls,
    forward_spec,
    peer_signature,
    peer_signature_ok,
)
from plughost.domain.release import ReleaseView
from plughost.domain.states import Status
from plughost.errors import NotFoundError, Unavailable


def _rel(rid: int, plugin_id: str, name: str) -> ReleaseView:
    now = datetime.now(UTC)
    return ReleaseView(
        id=rid,
        namespace_id="ns",
        plugin_pk=rid,
        plugin_id=plugin_id,
        name=name,
        version="1.0.0",
        status=Status.DEPLOYED,
        message=None,
        error=None,
        queued_at=now,
        started_at=now,
        deployed_at=now,
        finished_at=now,
    )


def test_notifications_are_read_into_one_batch() -> None:
    changes = Changes()
    assert not changes
    for payload in ("r12", "r12", "r7", "a", "k", "l", "d5", "x5", "x6", "?"):
        changes.add(payload)
    assert changes.releases == {7, 12}
    assert changes.aliases and changes.keys and changes.lease and changes.full
    assert changes.plugins == {5: True, 6: False}  # a delete wins over a disable


def test_a_follower_routes_deployment_names_plugin_ids_and_aliases() -> None:
    one, two = _rel(1, "emb_1_0_0", "emb"), _rel(2, "emb_2_0_0", "emb")
    groups: dict[int, Any] = {}
    table = follower_routes(
        [two, one], {("ns", "emb"): 1}, lambda r: groups.setdefault(r.id, object())
    )
    assert table[("ns", "custom_plugin_emb_1_0_0")].release_id == 1
    assert table[("ns", "emb_2_0_0")].release_id == 2
    assert table[("ns", "emb")].release_id == 1  # the alias table decides, not the newest
    assert follower_routes([two], {("ns", "emb"): 1}, lambda r: object()).get(("ns", "emb")) is None


class FakeGroup(ReplicaGroup):
    """The new leader's own group of the release: records the calls it answers."""

    def __init__(self) -> None:
        self.spec = forward_spec("custom_plugin_emb", 1, "ns")
        self.calls: list[bytes] = []

    async def call_body(self, body: bytes, deadline_s: float | None = None) -> bytes:
        self.calls.append(body)
        return b'{"ok": true}'

    async def health(self) -> bool:
        return True

    def observe(self) -> GroupHealth:
        return GroupHealth(desired=1, ready=1)

    def snapshot(self) -> GroupSnapshot:
        return plain_snapshot(self.observe())

    async def stop(self, drain_timeout_s: float) -> None:
        return None


def test_a_forwarded_call_waits_for_the_new_leader_and_is_answered_by_it() -> None:
    state: dict[str, Any] = {"leading": False, "group": None, "tries": 0}
    group = FakeGroup()

    async def scenario() -> bytes:
        peers = PeerCalls(
            b"s",
            leader_address=lambda: None,
            local_group=lambda rid: state["group"],
            leading=lambda: state["leading"],
            hold_s=5.0,
        )

        async def takeover() -> None:
            await asyncio.sleep(0.1)
            state["leading"] = True  # elected, replicas still starting
            await asyncio.sleep(0.1)
            state["group"] = group  # restored

        waiter = asyncio.create_task(takeover())
        out = await ForwardGroup(forward_spec("d", 3, "ns"), peers).call_body(b"{}")
        await waiter
        return out

    assert asyncio.run(scenario()) == b'{"ok": true}' and group.calls == [b"{}"]


def test_a_call_waiting_on_a_dead_leaders_kept_port_moves_to_the_next_leader() -> None:
    """The dead leader's port keeper holds its listening socket: a forwarded call connects
    and would wait there for its whole timeout (60 s). Once this server leads, it goes to the
    replicas restored here instead."""
    kept = socket.socket()
    kept.bind(("127.0.0.1", 0))
    kept.listen(16)  # never accepted, as the keeper's socket
    address = f"http://127.0.0.1:{kept.getsockname()[1]}"
    state: dict[str, Any] = {"leading": False, "group": None}
    group = FakeGroup()

    async def scenario() -> bytes:
        peers = PeerCalls(
            b"s",
            leader_address=lambda: None if state["leading"] else address,
            local_group=lambda rid: state["group"],
            leading=lambda: state["leading"],
            hold_s=30.0,
            call_timeout_s=60.0,
        )

        async def takeover() -> None:
            # until the call waits in the kept port's queue (the listener turns readable)
            for _ in range(3000):  # bounded: 30 s or more
                if select.select([kept], [], [], 0)[0]:
                    break
                await asyncio.sleep(0.01)
            state["leading"] = True
            state["group"] = group

        waiter = asyncio.create_task(takeover())
        try:
            # far below the call's own timeout: only a call that left the kept port ends
            return await asyncio.wait_for(peers.call(3, b"{}"), 15.0)
        finally:
            await waiter
            await peers.close()

    try:
        assert asyncio.run(scenario()) == b'{"ok": true}' and group.calls == [b"{}"]
    finally:
        kept.close()


def test_a_forwarded_call_to_a_release_gone_meanwhile_is_a_404_and_a_hold_ends_in_503() -> None:
    async def call(wanted: bool) -> bytes:
        peers = PeerCalls(
            b"s",
            leader_address=lambda: None,
            local_group=lambda rid: None,
            leading=lambda: False,
            wanted=lambda rid: wanted,
            hold_s=0.2,
        )
        return await peers.call(3, b"{}")

    with pytest.raises(NotFoundError):
        asyncio.run(call(False))
    with pytest.raises(Unavailable):
        asyncio.run(call(True))


def test_peer_signatures_bind_secret_release_time_and_body() -> None:
    import time

    stamp = f"{time.time():.3f}"
    sig = peer_signature(b"secret", 4, stamp, b"{}")
    assert peer_signature_ok(b"secret", 4, stamp, b"{}", sig)
    assert not peer_signature_ok(b"other", 4, stamp, b"{}", sig)
    assert not peer_signature_ok(b"secret", 5, stamp, b"{}", sig)
    assert not peer_signature_ok(b"secret", 4, stamp, b"{1}", sig)
    old = "1000.000"
    assert not peer_signature_ok(b"secret", 4, old, b"{}", peer_signature(b"secret", 4, old, b"{}"))
    assert not peer_signature_ok(b"secret", 4, "not a time", b"{}", sig)
