"""Namespace quotas, pure: a namespace's policy, its checked fields, the quota arithmetic of a
deploy, and the token buckets of the request rates (issue 28, item 2).

Nothing here reads the database or the clock by itself: :mod:`plughost.services.policies`
keeps every namespace's policy in memory and hands the rate gates to the data plane.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from plughost.errors import RETRY_AFTER_MAX_S, PlughostError, ValidationError

INT_FIELDS = ("max_replicas", "max_memory_mb", "max_batch_jobs")
RATE_FIELDS = ("requests_per_second", "key_requests_per_second")
FIELDS = (*INT_FIELDS, *RATE_FIELDS, "egress_allow")
MAX_INT = 1_000_000_000
MAX_RATE = 1_000_000.0
MAX_EGRESS_PATTERNS = 256
KEYS_KEPT = 10_000  # per-key buckets of one namespace kept before the full ones are dropped

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


class QuotaExceededError(PlughostError):
    """A namespace quota refused the request: 429 with ``Retry-After`` for what clears by
    itself (a request rate, a running batch job), 409 for what needs the operator (replicas
    or memory of deployments: undeploy, or raise the quota). ``details`` names the quota,
    its limit and what is in use."""

    error_type = "QuotaExceededError"

    def __init__(
        self,
        message: str,
        details: dict[str, Any],
        status: int = 429,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, details)
        self.status_code = status
        if retry_after_s is not None:
            seconds = max(1, min(RETRY_AFTER_MAX_S, math.ceil(retry_after_s)))
            self.headers = {"Retry-After": str(seconds)}


@dataclass(frozen=True)
class NamespacePolicy:
    """One namespace's quotas; None (and an empty ``egress_allow``) is no limit / no network."""

    namespace_id: str
    max_replicas: int | None = None
    max_memory_mb: int | None = None
    max_batch_jobs: int | None = None
    requests_per_second: float | None = None
    key_requests_per_second: float | None = None
    egress_allow: tuple[str, ...] = ()
    updated_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace_id": self.namespace_id,
            **{name: getattr(self, name) for name in (*INT_FIELDS, *RATE_FIELDS)},
            "egress_allow": list(self.egress_allow),
            "updated_at": self.updated_at,
        }


# -- checking the fields an admin sets ---------------------------------------------------------
def check_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a policy change, checked and normalised (only those given; None clears
    one). ValidationError (422) names the first field that is wrong."""
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ValidationError(
            f"unknown policy field(s): {', '.join(unknown)}",
            {"fields": unknown, "known": list(FIELDS)},
        )
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None:
            out[name] = None
        elif name in INT_FIELDS:
            out[name] = _whole(name, value)
        elif name in RATE_FIELDS:
            out[name] = _rate(name, value)
        else:
            out[name] = check_egress(value)
    return out


def _whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise ValidationError(
            f"{name} must be a whole number from 0 to {MAX_INT}, not {value!r}", {"field": name}
        )
    return value


def _rate(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_RATE  # NaN fails every comparison
    ):
        raise ValidationError(
            f"{name} must be a number of requests per second above 0 and at most "
            f"{MAX_RATE:g}, not {value!r}",
            {"field": name},
        )
    return float(value)


def check_egress(value: Any) -> list[str]:
    """A list of ``host[:port]`` patterns, lower-cased, duplicates dropped: a host name, a
    ``*.example.com`` wildcard (its subdomains), an IPv4 address or a bracketed IPv6 one;
    the port 1-65535 (none: 80 and 443)."""
    if not isinstance(value, list | tuple):
        raise ValidationError(
            "egress_allow must be a list of host[:port] patterns", {"field": "egress_allow"}
        )
    if len(value) > MAX_EGRESS_PATTERNS:
        raise ValidationError(
            f"egress_allow holds at most {MAX_EGRESS_PATTERNS} patterns", {"field": "egress_allow"}
        )
    out: list[str] = []
    for item in value:
        pattern = check_egress_pattern(item)
        if pattern not in out:
            out.append(pattern)
    return out


def check_egress_pattern(item: Any) -> str:
    bad = ValidationError(
        f"egress_allow: {item!r} is not a host[:port] pattern (a host name, *.domain, an IP "
        "address, [IPv6]; port 1-65535)",
        {"field": "egress_allow", "pattern": str(item)[:300]},
    )
    if not isinstance(item, str) or not 0 < len(item) <= 300 or item != item.strip():
        raise bad
    text = item.lower()
    host, port = text, None
    if text.startswith("["):  # [IPv6] or [IPv6]:port
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else "!"
        if rest and not rest.startswith(":"):
            raise bad
        host, port = text[1:end], rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad from None
        host = f"[{host}]"
    else:
        if ":" in text:
            host, port = text.rsplit(":", 1)
        if not _is_ipv4(host) and (len(host) > 253 or not _HOST.match(host)):
            raise bad
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535 or port != str(int(port)):
            raise bad
        return f"{host}:{int(port)}"
    return host


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


# -- the replicas and memory of deployments ----------------------------------------------------
@dataclass(frozen=True)
class Demand:
    """What one release of a plugin takes: its replicas and their memory (MB)."""

    replicas: int
    memory_mb: float


def demand_of(replicas: int, serve_config: Mapping[str, Any], default_memory_gb: float) -> Demand:
    """``replicas`` of ``serve_config.memory_gb`` each (else the server's default)."""
    raw = serve_config.get("memory_gb")
    ok = isinstance(raw, int | float) and not isinstance(raw, bool) and 0 < raw < math.inf
    memory_gb = float(raw) if ok else default_memory_gb
    return Demand(replicas, replicas * memory_gb * 1024)


def unclamped_ceiling(serve_config: Mapping[str, Any], starting: int) -> int:
    """The replicas a release may reach when no plughost autoscaler clamps it to the quota
    (Ray Serve's own autoscaler): ``max_replicas`` of an autoscaling serve_config (one
    without ``num_replicas``), else ``starting``."""
    if serve_config.get("num_replicas") is not None:
        return starting
    raw = serve_config.get("max_replicas")
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw >= 1:
        return starting
    return max(starting, int(min(raw, MAX_INT)))


def capacity_error(
    policy: NamespacePolicy, others: list[Demand], adding: Demand
) -> QuotaExceededError | None:
    """The 409 for a deploy of ``adding`` next to the ``others`` the namespace runs, when it
    would pass ``max_replicas`` or ``max_memory_mb``; None when it fits."""
    ns = policy.namespace_id
    replicas = sum(d.replicas for d in others)
    memory = sum(d.memory_mb for d in others)
    checks = (
        ("max_replicas", policy.max_replicas, replicas, adding.replicas, "replica(s)"),
        ("max_memory_mb", policy.max_memory_mb, memory, adding.memory_mb, "MB"),
    )
    for quota, limit, used, more, unit in checks:
        if limit is not None and used + more > limit:
            return QuotaExceededError(
                f"namespace quota {quota}={limit} reached: namespace {ns!r} runs {used:g} "
                f"{unit} and this deployment needs {more:g} more; undeploy a plugin or ask "
                "an admin to raise the quota",
                {
                    "namespace_id": ns,
                    "quota": quota,
                    "limit": limit,
                    "in_use": used,
                    "requested": more,
                },
                status=409,
            )
    return None


# -- request rates --------------------------------------------------------------------------
class TokenBucket:
    """``rate`` tokens a second up to a burst of one second's worth (at least 1)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.tokens = self.burst
        self.stamp = now

    def refill(self, now: float) -> float:
        """The tokens at ``now``."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.tokens

    def wait_s(self) -> float:
        """Seconds until one token is there (after a refill)."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


class RateGate:
    """A namespace's request rates: one bucket for the namespace, one per API key. Used on
    the event loop only (no lock). ``rejected`` counts refusals per (namespace, quota)."""

    def __init__(
        self,
        policy: NamespacePolicy,
        clock: Callable[[], float],
        rejected: Counter[tuple[str, str]],
    ) -> None:
        self.namespace_id = policy.namespace_id
        self.rate = policy.requests_per_second
        self.key_rate = policy.key_requests_per_second
        self.clock = clock
        self.rejected = rejected
        now = clock()
        self.bucket = TokenBucket(self.rate, now) if self.rate is not None else None
        self.keys: dict[str, TokenBucket] = {}

    def same_rates(self, policy: NamespacePolicy) -> bool:
        return (self.rate, self.key_rate) == (
            policy.requests_per_second,
            policy.key_requests_per_second,
        )

    def admit(self, key_id: str | None) -> None:
        """Take one token of the namespace's bucket and of the key's; QuotaExceededError (429
        with Retry-After) when either is empty (then neither is taken)."""
        now = self.clock()
        bucket = self.bucket
        if bucket is not None and bucket.refill(now) < 1.0:
            raise self._refused("requests_per_second", self.rate, bucket, "namespace")
        kbucket = None
        if self.key_rate is not None and key_id is not None:
            kbucket = self.keys.get(key_id)
            if kbucket is None:
                kbucket = self._key_bucket(key_id, now)
            if kbucket.refill(now) < 1.0:
                raise self._refused("key_requests_per_second", self.key_rate, kbucket, "API key")
            kbucket.tokens -= 1.0
        if bucket is not None:
            bucket.tokens -= 1.0

    def _key_bucket(self, key_id: str, now: float) -> TokenBucket:
        assert self.key_rate is not None
        if len(self.keys) >= KEYS_KEPT:  # full buckets are what a new one would be
            self.keys = {k: b for k, b in self.keys.items() if b.refill(now) < b.burst}
        bucket = self.keys[key_id] = TokenBucket(self.key_rate, now)
        return bucket

    def _refused(
        self, quota: str, limit: float | None, bucket: TokenBucket, whose: str
    ) -> QuotaExceededError:
        ns = self.namespace_id
        self.rejected[(ns, quota)] += 1
        wait = bucket.wait_s()
        seconds = max(1, min(RETRY_AFTER_MAX_S, math.ceil(wait)))
        return QuotaExceededError(
            f"namespace quota {quota}={limit:g} reached: too many requests for this {whose} "
            f"in namespace {ns!r}; retry after {seconds} s",
            {"namespace_id": ns, "quota": quota, "limit": limit},
            status=429,
            retry_after_s=wait,
        )
