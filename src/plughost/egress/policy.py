"""The egress allowlist and the decision for one destination.

A pattern is ``host[:port]``: an exact host name, an IP address (IPv6 in brackets when a port
follows), or ``*.example.com`` (every subdomain of example.com, not example.com itself). No
port means 80 and 443. A destination is allowed when a pattern matches its host and port;
then its name is resolved here (the proxy connects to the very address checked, so a DNS
answer that changes later cannot move the connection) and every address it resolves to must
be globally routable: loopback, link-local (cloud metadata at 169.254.169.254 included),
private, shared, unspecified, multicast and reserved addresses are refused unless the pattern
that matched names the host or address exactly (a wildcard never does).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

DEFAULT_PORTS = (80, 443)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``: the proxy's name lookup (tests inject their own)."""


class PatternError(ValueError):
    """An allowlist entry that is not ``host[:port]``."""


@dataclass(frozen=True)
class Pattern:
    """One allowlist entry: ``host`` (lower case, an IP in its compressed form), ``port``
    (None: 80 and 443), ``wildcard`` (``*.host``: its subdomains)."""

    host: str
    port: int | None
    wildcard: bool

    def matches(self, host: str, port: int) -> bool:
        if port not in ((self.port,) if self.port is not None else DEFAULT_PORTS):
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host


@dataclass(frozen=True)
class Decision:
    """The proxy's answer for one destination: ``address`` to connect to when allowed."""

    allowed: bool
    reason: str
    address: str | None = None


def normal_host(host: str) -> str:
    """``host`` as patterns are compared: lower case, no trailing dot, no IPv6 brackets, an IP
    address in its canonical form."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    ip = ip_of(host)
    return str(ip) if ip is not None else host


def ip_of(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def split_host_port(text: str) -> tuple[str, int | None]:
    """``host[:port]`` (IPv6 as ``[::1]:443``, or bare without a port); PatternError."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise PatternError(f"not host[:port]: {text!r}")
        return host, _port(rest[1:], text) if rest else None
    if text.count(":") > 1:  # a bare IPv6 address
        return text, None
    host, sep, port = text.partition(":")
    return host, _port(port, text) if sep else None


def _port(raw: str, text: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise PatternError(f"bad port in {text!r}")
    return int(raw)


def parse_pattern(text: str) -> Pattern:
    raw_host, port = split_host_port(text)
    wildcard = raw_host.startswith("*.")
    host = normal_host(raw_host[2:] if wildcard else raw_host)
    if not host or "*" in host or "/" in host or any(c.isspace() for c in host):
        raise PatternError(f"not a host name or address: {text!r}")
    if wildcard and ip_of(host) is not None:
        raise PatternError(f"a wildcard names domains, not addresses: {text!r}")
    return Pattern(host, port, wildcard)


def parse_patterns(entries: Iterable[str]) -> tuple[Pattern, ...]:
    return tuple(parse_pattern(e) for e in entries if e.strip())


def parse_allow_setting(text: str) -> dict[str, tuple[str, ...]]:
    """``ns_a=a.example:443,*.b.example;ns_b=...`` (PLUGHOST_EGRESS_ALLOW) as namespace ->
    entries; every entry is checked (PatternError names the bad one)."""
    table: dict[str, tuple[str, ...]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        namespace, sep, entries = part.partition("=")
        if not sep or not namespace.strip():
            raise PatternError(f"not namespace=host[:port],...: {part.strip()!r}")
        items = tuple(e.strip() for e in entries.split(",") if e.strip())
        parse_patterns(items)
        table[namespace.strip()] = table.get(namespace.strip(), ()) + items
    return table


def refused_range(ip: IPAddress) -> str | None:
    """Why ``ip`` is no public destination (None when it is one)."""
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not globally routable", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def matching(patterns: Sequence[Pattern], host: str, port: int) -> Pattern | None:
    """The pattern allowing ``host:port``, an exact one before a wildcard; None if none."""
    hits = [p for p in patterns if p.matches(host, port)]
    hits.sort(key=lambda p: p.wildcard)
    return hits[0] if hits else None


async def decide(patterns: Sequence[Pattern], host: str, port: int, resolver: Resolver) -> Decision:
    """Whether ``host:port`` may be reached, and at which address (see the module text)."""
    host = normal_host(host)
    pattern = matching(patterns, host, port)
    if pattern is None:
        return Decision(False, f"{host}:{port} is not on the namespace's egress allowlist")
    explicit = not pattern.wildcard
    literal = ip_of(host)
    if literal is not None:
        addresses: Sequence[str] = [str(literal)]
    else:
        try:
            addresses = await resolver(host, port)
        except OSError as exc:
            return Decision(False, f"cannot resolve {host}: {exc}")
    if not addresses:
        return Decision(False, f"{host} has no address")
    for address in addresses:
        ip = ip_of(address.split("%", 1)[0])
        if ip is None:
            return Decision(False, f"{host} resolved to a non-address {address!r}")
        why = refused_range(ip)
        if why is not None and not explicit:
            return Decision(
                False,
                f"{host} resolves to {ip}, a {why} address: allowed only when listed exactly",
            )
    return Decision(True, "allowed", addresses[0])
