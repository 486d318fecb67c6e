"""Single-flight cache refreshes of the hot paths (logic only; the live server covers HTTP)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from plughost.dataplane.request import Flights
from plughost.errors import AuthenticationError
from plughost.services.accounts import Accounts, Principal


def test_concurrent_misses_share_one_call() -> None:
    calls: list[str] = []
    release = threading.Event()

    def lookup(key: str) -> str:
        calls.append(key)
        release.wait(5)
        return key.upper()

    async def main() -> list[str]:
        flights = Flights()
        waiters = [asyncio.create_task(flights.join("k", lookup, "abc")) for _ in range(20)]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(*waiters)
        again = await flights.join("k", lookup, "abc")  # finished: a new call
        return [*results, again]

    results = asyncio.run(main())
    assert results == ["ABC"] * 21
    assert calls == ["abc", "abc"]


def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    attempts: list[int] = []

    def deny() -> None:
        attempts.append(1)
        time.sleep(0.05)
        raise AuthenticationError("revoked")

    async def main() -> list[BaseException | None]:
        flights = Flights()
        outcomes = await asyncio.gather(
            *(flights.join("k", deny) for _ in range(5)), return_exceptions=True
        )
        background = flights.start("k", deny)  # nobody awaits it: no "never retrieved"
        await asyncio.wait([background])
        return list(outcomes)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, AuthenticationError) for o in outcomes)
    assert len(attempts) == 2


class _FakeAccounts(Accounts):
    """Accounts whose database lookup is a dict (the cache logic is what is tested)."""

    def __init__(self, ttl: float) -> None:
        self.now = 1000.0
        super().__init__(db=None, cache_ttl_s=ttl, clock=lambda: self.now)  # type: ignore[arg-type]
        self.valid = {"Bearer good": Principal("key_1", "org", None)}

    def authenticate(self, authorization: str | None) -> Principal:
        if authorization not in self.valid:
            raise AuthenticationError("invalid or revoked API key")
        return self.valid[authorization]


def test_entries_are_due_for_refresh_at_half_life_and_dropped_when_revoked() -> None:
    accounts = _FakeAccounts(ttl=0.2)
    assert accounts.cached_principal("Bearer good") is None
    accounts.authenticate_and_cache("Bearer good")
    assert accounts.cached_principal("Bearer good") is not None
    assert not accounts.principal_due("Bearer good")
    accounts.now += 0.12
    assert accounts.principal_due("Bearer good")
    assert accounts.cached_principal("Bearer good") is not None  # still answers meanwhile
    del accounts.valid["Bearer good"]  # revoked
    with pytest.raises(AuthenticationError):
        accounts.authenticate_and_cache("Bearer good")
    assert accounts.cached_principal("Bearer good") is None, "a revoked key must not linger"


def test_the_one_call_check_answers_only_while_both_entries_are_fresh() -> None:
    accounts = _FakeAccounts(ttl=0.4)
    accounts.namespace_visible = lambda principal, namespace_id: None  # type: ignore[method-assign]
    assert accounts.fresh_caller("Bearer good", "ns") is None  # nothing cached
    accounts.authenticate_and_cache("Bearer good")
    assert accounts.fresh_caller("Bearer good", "ns") is None  # the namespace not checked
    principal = accounts.cached_principal("Bearer good")
    assert principal is not None
    accounts.namespace_visible_and_cache(principal, "ns")
    assert accounts.fresh_caller("Bearer good", "ns") == principal
    assert accounts.fresh_caller("Bearer good", "other") is None  # per namespace
    assert accounts.fresh_caller("Bearer bad", "ns") is None
    accounts.now += 0.25  # past half life: due for a refresh, so the slower steps run
    assert accounts.fresh_caller("Bearer good", "ns") is None
    assert accounts.cached_principal("Bearer good") == principal
