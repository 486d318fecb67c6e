"""The secret mask on the replicas' output (plughost.logs.masking) and its place in front of
the log store, without a server or a database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from plughost.logs.masking import MIN_MASKED_CHARS, MaskTable, SecretMask
from plughost.logs.output import ReplicaLogs
from plughost.logs.store import LogStore
from plughost.logs.tags import STDOUT_TAG

SECRET = "sk-abcdef123456"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """A table source that counts its loads; ``fail`` makes the next loads raise."""

    def __init__(self, orgs: dict[str, str], secrets: list[tuple[str, str]]) -> None:
        self.orgs, self.secrets = orgs, secrets
        self.loads = 0
        self.fail = False

    def __call__(self) -> MaskTable:
        self.loads += 1
        if self.fail:
            raise RuntimeError("database gone")
        return MaskTable.build(self.orgs, self.secrets)


class Deferred:
    """A background runner the test drains by hand."""

    def __init__(self) -> None:
        self.queued: list[Callable[[], None]] = []

    def __call__(self, job: Callable[[], None]) -> None:
        self.queued.append(job)

    def drain(self) -> None:
        while self.queued:
            self.queued.pop(0)()


def build(loader: Loader, clock: Clock, runner: Deferred, ttl_s: float = 10.0) -> SecretMask:
    mask = SecretMask(loader, ttl_s, clock=clock, background=runner)
    mask.refresh()
    return mask


def test_values_of_the_lines_organization_are_masked_longest_first() -> None:
    loader = Loader({"ns1": "org1", "ns2": "org2"}, [("org1", "abcd"), ("org1", "abcdefgh")])
    mask = build(loader, Clock(), Deferred())
    assert mask.mask("ns1", "x abcdefgh y abcd") == "x *** y ***"
    assert mask.mask("ns2", "x abcdefgh y abcd") == "x abcdefgh y abcd"
    assert mask.mask_org("org1", "abcd") == "***"


def test_values_shorter_than_the_minimum_are_left_alone() -> None:
    short = "x" * (MIN_MASKED_CHARS - 1)
    loader = Loader({"ns1": "org1"}, [("org1", short)])
    mask = build(loader, Clock(), Deferred())
    assert mask.mask("ns1", f"value {short}") == f"value {short}"


def test_an_old_table_is_reloaded_in_the_background_once() -> None:
    clock, runner = Clock(), Deferred()
    loader = Loader({"ns1": "org1"}, [])
    mask = build(loader, clock, runner)
    clock.now += 5
    mask.mask("ns1", "line")
    assert runner.queued == []  # still fresh
    clock.now += 6
    loader.secrets = [("org1", SECRET)]
    assert mask.mask("ns1", SECRET) == SECRET  # the line is not held up by the reload
    mask.mask("ns1", "another line")
    assert len(runner.queued) == 1  # one reload however many lines arrive meanwhile
    runner.drain()
    assert mask.mask("ns1", SECRET) == "***"
    assert loader.loads == 2


def test_an_unknown_namespace_asks_for_a_reload_at_most_once_a_second() -> None:
    clock, runner = Clock(), Deferred()
    loader = Loader({}, [("org1", SECRET)])
    mask = build(loader, clock, runner)
    assert mask.mask("ns_new", SECRET) == SECRET  # loaded just now: not yet
    clock.now += 1.5
    loader.orgs = {"ns_new": "org1"}  # created since the last load
    mask.mask("ns_new", SECRET)
    runner.drain()
    assert mask.mask("ns_new", SECRET) == "***"
    assert loader.loads == 2


def test_a_failed_reload_keeps_the_previous_table_until_the_next_one_is_due() -> None:
    clock, runner = Clock(), Deferred()
    loader = Loader({"ns1": "org1"}, [("org1", SECRET)])
    mask = build(loader, clock, runner)
    loader.fail = True
    clock.now += 11
    mask.mask("ns1", "x")
    runner.drain()
    assert mask.mask("ns1", SECRET) == "***"
    assert runner.queued == []  # the failure does not turn every line into a reload
    assert loader.loads == 2


def test_learn_reloads_only_for_a_value_it_would_not_mask() -> None:
    loader = Loader({"ns1": "org1"}, [("org1", SECRET)])
    mask = build(loader, Clock(), Deferred())
    mask.learn("org1", SECRET)
    mask.learn("org1", "abc")  # too short to mask: no reload for it
    assert loader.loads == 1
    loader.secrets.append(("org1", "fresh-value"))
    mask.learn("org1", "fresh-value")
    assert loader.loads == 2
    assert mask.mask("ns1", "fresh-value") == "***"


def test_the_log_store_keeps_followers_and_tails_see_only_masked_lines(tmp_path: Path) -> None:
    mask = build(Loader({"ns1": "org1"}, [("org1", SECRET)]), Clock(), Deferred())
    logs = ReplicaLogs(LogStore(tmp_path), mask=mask.mask)
    followed: list[str] = []
    logs.follow(("ns1", "p_1_0_0"), object(), lambda entry: followed.append(entry.line))
    logs.emit(("ns1", "p_1_0_0"), 1, "r1-1", f"{STDOUT_TAG}my key is {SECRET}")
    # the value straddles the line cut (8192 characters): masked first, nothing of it is left
    logs.emit(("ns1", "p_1_0_0"), 1, "r1-1", "x" * 8185 + SECRET)
    logs.store.flush()
    stored = [e.line for e in logs.store.read([1])]
    assert stored[0] == "my key is ***"
    assert stored[1] == "x" * 8185 + "***"
    assert followed[0] == "my key is ***"
    assert SECRET not in " ".join(logs.last_lines(1))
