"""Namespace quotas, pure (issue 28, item 2): the token buckets of the request rates, the
checked fields of a policy, and the replicas and memory arithmetic of a deploy."""

from __future__ import annotations

from collections import Counter

import pytest

from plughost.domain.quotas import (
    Demand,
    NamespacePolicy,
    QuotaExceededError,
    RateGate,
    TokenBucket,
    capacity_error,
    check_fields,
    demand_of,
)
from plughost.errors import ValidationError, wire_error


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_holds_one_second_of_its_rate_and_refills_at_that_rate() -> None:
    bucket = TokenBucket(4.0, 0.0)
    assert bucket.burst == 4.0 and bucket.refill(0.0) == 4.0
    bucket.tokens = 0.0
    assert bucket.refill(0.5) == 2.0
    assert bucket.refill(10.0) == 4.0  # never past the burst
    slow = TokenBucket(0.5, 0.0)
    assert slow.burst == 1.0  # a burst of at least one call
    slow.tokens = 0.0
    assert slow.wait_s() == 2.0


def test_the_namespace_rate_refuses_past_the_burst_with_429_and_retry_after() -> None:
    clock, rejected = Clock(), Counter[tuple[str, str]]()
    gate = RateGate(NamespacePolicy("ns_q", requests_per_second=2), clock, rejected)
    gate.admit("k1")
    gate.admit("k2")
    with pytest.raises(QuotaExceededError) as caught:
        gate.admit("k1")
    exc = caught.value
    status, body = wire_error(exc)
    assert status == 429 and body["error"]["type"] == "QuotaExceededError"
    assert "requests_per_second=2" in body["error"]["message"]
    assert body["error"]["details"]["quota"] == "requests_per_second"
    assert exc.headers == {"Retry-After": "1"}
    assert rejected == Counter({("ns_q", "requests_per_second"): 1})
    clock.now += 0.5  # one more token
    gate.admit("k3")
    with pytest.raises(QuotaExceededError):
        gate.admit("k3")


def test_the_key_rate_is_per_key_and_a_refusal_takes_no_namespace_token() -> None:
    clock, rejected = Clock(), Counter[tuple[str, str]]()
    policy = NamespacePolicy("ns_q", requests_per_second=3, key_requests_per_second=1)
    gate = RateGate(policy, clock, rejected)
    gate.admit("a")
    with pytest.raises(QuotaExceededError, match="key_requests_per_second=1"):
        gate.admit("a")  # the key's bucket is empty: refused, the namespace's untouched
    gate.admit("b")
    gate.admit("c")  # 3 namespace tokens went to a, b and c; a's refusal took none
    with pytest.raises(QuotaExceededError, match="requests_per_second=3"):
        gate.admit("d")
    assert rejected[("ns_q", "key_requests_per_second")] == 1
    assert rejected[("ns_q", "requests_per_second")] == 1


def test_a_slow_rate_says_to_come_back_later_within_the_retry_after_cap() -> None:
    clock = Clock()
    gate = RateGate(NamespacePolicy("ns", requests_per_second=0.1), clock, Counter())
    gate.admit(None)
    with pytest.raises(QuotaExceededError) as caught:
        gate.admit(None)
    assert caught.value.headers == {"Retry-After": "5"}  # 10 s away, capped at 5


def test_policy_fields_are_checked_and_normalised() -> None:
    fields = check_fields(
        {
            "max_replicas": 2,
            "max_memory_mb": 4096,
            "max_batch_jobs": 0,
            "requests_per_second": 50,
            "key_requests_per_second": 0.5,
            "egress_allow": [
                "API.example.com:443",
                "*.cdn.example",
                "10.0.0.5:8080",
                "[::1]:80",
                "api.example.com:443",
            ],
        }
    )
    assert fields["requests_per_second"] == 50.0
    assert fields["egress_allow"] == [
        "api.example.com:443",
        "*.cdn.example",
        "10.0.0.5:8080",
        "[::1]:80",
    ]
    assert check_fields({"max_replicas": None, "egress_allow": None}) == {
        "max_replicas": None,
        "egress_allow": None,
    }


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"max_replicas": -1}, "max_replicas"),
        ({"max_replicas": 1.5}, "max_replicas"),
        ({"max_replicas": True}, "max_replicas"),
        ({"max_memory_mb": "4096"}, "max_memory_mb"),
        ({"requests_per_second": 0}, "requests_per_second"),
        ({"requests_per_second": float("nan")}, "requests_per_second"),
        ({"key_requests_per_second": 1e9}, "key_requests_per_second"),
        ({"egress_allow": "api.example.com"}, "egress_allow"),
        ({"egress_allow": ["api.example.com:0"]}, "egress_allow"),
        ({"egress_allow": ["api.example.com:65536"]}, "egress_allow"),
        ({"egress_allow": ["api.example.com:08"]}, "egress_allow"),
        ({"egress_allow": ["http://api.example.com"]}, "egress_allow"),
        ({"egress_allow": ["*"]}, "egress_allow"),
        ({"egress_allow": ["a.*.example.com"]}, "egress_allow"),
        ({"egress_allow": ["-bad.example"]}, "egress_allow"),
        ({"egress_allow": [" api.example.com"]}, "egress_allow"),
        ({"egress_allow": ["[::1"]}, "egress_allow"),
        ({"egress_allow": ["[not-ip]:80"]}, "egress_allow"),
        ({"egress_allow": [443]}, "egress_allow"),
        ({"surprise": 1}, None),
    ],
    ids=lambda v: repr(v)[:60] if isinstance(v, dict) else str(v),
)
def test_a_wrong_field_is_a_422_naming_it(raw: dict[str, object], field: str | None) -> None:
    with pytest.raises(ValidationError) as caught:
        check_fields(raw)
    if field is not None:
        assert (caught.value.details or {})["field"] == field
    else:
        assert "unknown policy field" in caught.value.message


def test_a_deploy_past_the_replicas_or_memory_quota_is_a_409_naming_it() -> None:
    assert demand_of(2, {"memory_gb": 1.5}, 2.0) == Demand(2, 3072.0)
    assert demand_of(3, {}, 2.0) == Demand(3, 6144.0)  # the server's default memory
    policy = NamespacePolicy("ns_q", max_replicas=3, max_memory_mb=8192)
    others = [Demand(1, 2048.0), Demand(1, 2048.0)]
    assert capacity_error(policy, others, Demand(1, 2048.0)) is None  # exactly at the quota
    error = capacity_error(policy, others, Demand(2, 1024.0))
    assert error is not None and error.status_code == 409
    assert error.message.startswith("namespace quota max_replicas=3 reached")
    assert error.details == {
        "namespace_id": "ns_q",
        "quota": "max_replicas",
        "limit": 3,
        "in_use": 2,
        "requested": 2,
    }
    by_memory = capacity_error(policy, others, Demand(1, 4097.0))
    assert by_memory is not None and (by_memory.details or {})["quota"] == "max_memory_mb"
    assert capacity_error(NamespacePolicy("ns_q"), others * 50, Demand(16, 1e9)) is None


def test_the_unclamped_ceiling_is_max_replicas_of_an_autoscaling_config() -> None:
    from plughost.domain.quotas import unclamped_ceiling

    assert unclamped_ceiling({"min_replicas": 1, "max_replicas": 5}, 1) == 5
    assert unclamped_ceiling({"num_replicas": 2, "max_replicas": 5}, 2) == 2
    assert unclamped_ceiling({}, 1) == 1
    assert unclamped_ceiling({"max_replicas": True}, 1) == 1
    assert unclamped_ceiling({"min_replicas": 3, "max_replicas": 2}, 3) == 3
