"""Replica choice in a local group: least busy first, equally busy ones in turn (issue 14)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from plughost.backends.local.group import pick_least_busy


@dataclass
class FakeReplica:
    name: str
    in_flight: int = 0
    busy: int = 0  # a call stopped at its deadline still holds the plugin thread

    @property
    def load(self) -> int:
        return self.in_flight + self.busy


def _pick(replicas: list[FakeReplica], turn: int) -> str:
    return cast(FakeReplica, pick_least_busy(cast(Any, replicas), turn)).name


def test_sequential_calls_on_idle_replicas_take_them_in_turn() -> None:
    replicas = [FakeReplica("a"), FakeReplica("b"), FakeReplica("c")]
    seen = Counter(_pick(replicas, turn) for turn in range(1, 31))
    assert seen == {"a": 10, "b": 10, "c": 10}


def test_least_busy_wins_over_the_turn() -> None:
    replicas = [FakeReplica("a", 2), FakeReplica("b", 0), FakeReplica("c", 1)]
    assert {_pick(replicas, turn) for turn in range(10)} == {"b"}


def test_ties_among_the_least_busy_only() -> None:
    replicas = [FakeReplica("a", 1), FakeReplica("b", 0), FakeReplica("c", 0)]
    assert {_pick(replicas, turn) for turn in range(10)} == {"b", "c"}


def test_a_replica_whose_thread_a_stopped_call_holds_is_avoided() -> None:
    replicas = [FakeReplica("a", in_flight=0, busy=1000), FakeReplica("b", in_flight=3)]
    assert {_pick(replicas, turn) for turn in range(6)} == {"b"}
