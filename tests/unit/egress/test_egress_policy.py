"""The egress allowlist's patterns and the proxy's decision per destination, with an injected
name resolver (no real DNS here): wildcards, default ports, the refused address ranges and
the rule that only an exact entry opens them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from plughost.egress.policy import (
    Decision,
    Pattern,
    PatternError,
    decide,
    parse_allow_setting,
    parse_pattern,
    parse_patterns,
)


def resolver_of(table: dict[str, Sequence[str]]):
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError(f"no such name: {host}")
        return table[host]

    return resolve


def run_decide(entries: Sequence[str], host: str, port: int, table=None) -> Decision:
    return asyncio.run(decide(parse_patterns(entries), host, port, resolver_of(table or {})))


def test_patterns_parse_hosts_ports_wildcards_and_addresses() -> None:
    assert parse_pattern("API.Example.com.:8443") == Pattern("api.example.com", 8443, False)
    assert parse_pattern("*.cdn.example") == Pattern("cdn.example", None, True)
    assert parse_pattern("127.0.0.1:9000") == Pattern("127.0.0.1", 9000, False)
    assert parse_pattern("[::1]:443") == Pattern("::1", 443, False)
    assert parse_pattern("fe80::1") == Pattern("fe80::1", None, False)


@pytest.mark.parametrize(
    "bad",
    ["", "host:0", "host:99999", "host:http", "*.10.0.0.1", "a*b.example", "[::1", "ho st"],
    ids=["empty", "port0", "port-big", "port-name", "wild-ip", "inner-star", "bracket", "space"],
)
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(PatternError):
        parse_pattern(bad)


def test_the_setting_maps_namespaces_to_entries() -> None:
    table = parse_allow_setting("ns_a=api.example.com:443, *.cdn.example ; ns_b=127.0.0.1:81;")
    assert table == {"ns_a": ("api.example.com:443", "*.cdn.example"), "ns_b": ("127.0.0.1:81",)}
    assert parse_allow_setting("") == {}
    with pytest.raises(PatternError):
        parse_allow_setting("ns_a=host:notaport")
    with pytest.raises(PatternError):
        parse_allow_setting("just-a-host.example")


@pytest.mark.parametrize(
    ("host", "port", "allowed"),
    [
        ("a.cdn.example", 443, True),
        ("deep.a.cdn.example", 80, True),
        ("cdn.example", 443, False),  # the wildcard names subdomains only
        ("evilcdn.example", 443, False),
        ("a.cdn.example.evil.com", 443, False),
        ("a.cdn.example", 8080, False),  # no port in the entry: 80 and 443 only
        ("api.example.com", 443, True),
        ("api.example.com", 80, False),  # the entry names 443
        ("API.EXAMPLE.COM.", 443, True),
        ("other.example.com", 443, False),
    ],
    ids=[
        "sub",
        "deep-sub",
        "apex",
        "suffix-trick",
        "prefix-trick",
        "other-port",
        "exact",
        "exact-wrong-port",
        "case-dot",
        "unlisted",
    ],
)
def test_wildcards_and_ports_match(host: str, port: int, allowed: bool) -> None:
    table = {
        h: ["93.184.216.34"] for h in ("a.cdn.example", "deep.a.cdn.example", "api.example.com")
    }
    decision = run_decide(["*.cdn.example", "api.example.com:443"], host, port, table)
    assert decision.allowed is allowed, decision
    if not allowed:
        assert "not on the namespace's egress allowlist" in decision.reason


REFUSED_ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("10.1.2.3", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"),
    ("100.64.0.1", "not globally routable"),
]


@pytest.mark.parametrize(
    ("address", "kind"), REFUSED_ADDRESSES, ids=[a for a, _ in REFUSED_ADDRESSES]
)
def test_a_wildcard_never_opens_a_private_address(address: str, kind: str) -> None:
    decision = run_decide(
        ["*.corp.example"], "svc.corp.example", 443, {"svc.corp.example": [address]}
    )
    assert not decision.allowed
    assert f"a {kind} address" in decision.reason


@pytest.mark.parametrize(
    ("address", "kind"), REFUSED_ADDRESSES, ids=[a for a, _ in REFUSED_ADDRESSES]
)
def test_an_exact_entry_opens_the_private_address_it_names(address: str, kind: str) -> None:
    by_name = run_decide(
        ["svc.corp.example:443"], "svc.corp.example", 443, {"svc.corp.example": [address]}
    )
    assert by_name.allowed and by_name.address == address, kind
    literal = address if ":" not in address else f"[{address}]"
    by_address = run_decide([f"{literal}:443"], address, 443)
    assert by_address.allowed, by_address


def test_an_address_not_named_is_refused_even_beside_a_wildcard() -> None:
    decision = run_decide(["*.example.com"], "169.254.169.254", 80)
    assert not decision.allowed and "allowlist" in decision.reason


def test_one_private_answer_among_public_ones_refuses() -> None:
    table = {"mixed.example.com": ["93.184.216.34", "10.0.0.7"]}
    decision = run_decide(["*.example.com"], "mixed.example.com", 443, table)
    assert not decision.allowed and "10.0.0.7" in decision.reason


def test_the_checked_address_is_the_one_returned() -> None:
    table = {"api.example.com": ["93.184.216.34", "93.184.216.35"]}
    decision = run_decide(["api.example.com"], "api.example.com", 443, table)
    assert decision == Decision(True, "allowed", "93.184.216.34")


def test_a_name_that_does_not_resolve_is_refused() -> None:
    decision = run_decide(["*.example.com"], "nowhere.example.com", 443)
    assert not decision.allowed and "cannot resolve" in decision.reason
