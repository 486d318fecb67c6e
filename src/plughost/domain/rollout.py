"""Rollout options of a deploy: the strategy and the guard's thresholds.

A deploy without a body (the SDK's call) means today's blue-green: the switch with no bake
window, so a client that knows nothing of guards gets exactly what it always got. A body turns
the guard on, with these defaults for what it leaves out (a 30 s bake for blue-green). The
options are stored with the release (``releases.rollout``, JSON) so a restart drives the same rollout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any, Literal, get_args

from plughost.errors import ValidationError

# The accepted values of each option, defined here once: the API's wire schema
# (plughost.api.rollout_schema) is built from these, so its OpenAPI document and this check
# cannot disagree.
Strategy = Literal["blue_green", "canary"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
PERCENT_RANGE = (1, 100)  # a canary step's share of the calls, in whole percent
STEPS_RANGE = (1, 20)  # how many canary steps
LIMITS: dict[str, tuple[int | float, int | float]] = {  # option -> (lowest, highest) accepted
    "step_seconds": (0.1, 3600),
    "bake_seconds": (0, 3600),
    "max_error_rate": (0, 1),
    "min_failed_calls": (1, 100_000),
    "max_p99_ratio": (1, 1000),
    "min_p99_ms": (0, 600_000),
    "traffic_deadline_seconds": (1, 86_400),
}


@dataclass(frozen=True)
class RolloutOptions:
    """How a new release takes traffic from the one it replaces, and when it is rolled back.

    ``canary``: the alias sends ``canary_steps[i]`` percent of its calls to the new release for
    ``step_seconds`` each (a step with no call on the new release waits, up to
    ``traffic_deadline_seconds``); ``blue_green``: all at once, then ``bake_seconds`` of
    watching (0: none). Either way a breach sends all traffic back to the old release at once.
    A breach: at least ``min_failed_calls`` failed calls and an error rate above the old
    release's by more than ``max_error_rate``; or a p99 of at least ``min_p99_ms`` that is
    more than ``max_p99_ratio`` times the old release's."""

    strategy: Strategy = "blue_green"
    canary_steps: tuple[int, ...] = (10, 50, 100)
    step_seconds: float = 30.0
    bake_seconds: float = 30.0
    max_error_rate: float = 0.01
    min_failed_calls: int = 5
    max_p99_ratio: float = 2.0
    min_p99_ms: float = 50.0
    traffic_deadline_seconds: float = 300.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["canary_steps"] = list(self.canary_steps)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RolloutOptions:
        """Options as stored (trusted: they were checked by :func:`parse_rollout`); none stored
        (a release from before rollout options) is a body-less deploy."""
        if not data:
            return cls(bake_seconds=0.0)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "canary_steps" in known:
            known["canary_steps"] = tuple(known["canary_steps"])
        return cls(**known)


def _bad(field: str, why: str) -> ValidationError:
    return ValidationError(f"deploy option {field!r} {why}", {"field": field})


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(field, "must be a number")
    low, high = LIMITS[field]
    if not low <= value <= high:
        raise _bad(field, f"must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _whole(field: str, value: Any) -> int:
    low, high = LIMITS[field]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(field, f"must be a whole number between {low} and {high}")
    return value


def _steps(value: Any) -> tuple[int, ...]:
    fewest, most = STEPS_RANGE
    low, high = PERCENT_RANGE
    if not isinstance(value, list) or not fewest <= len(value) <= most:
        raise _bad("canary_steps", f"must be a list of {fewest} to {most} percentages")
    if any(isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high for v in value):
        raise _bad("canary_steps", f"must hold whole percentages between {low} and {high}")
    if any(b <= a for a, b in pairwise(value)) or value[-1] != 100:
        raise _bad("canary_steps", "must rise strictly and end at 100")
    return tuple(value)


def parse_rollout(body: dict[str, Any] | None) -> RolloutOptions:
    """The options of a deploy body; a bad or unknown key is a ValidationError naming it."""
    if body is None:
        return RolloutOptions(bake_seconds=0.0)
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key == "strategy":
            if value not in STRATEGIES:
                raise _bad("strategy", f"must be one of {', '.join(STRATEGIES)}")
            values[key] = value
        elif key == "canary_steps":
            values[key] = _steps(value)
        elif key == "min_failed_calls":
            values[key] = _whole(key, value)
        elif key in LIMITS:
            values[key] = _number(key, value)
        elif value is not None:
            raise _bad(key, "is not a deploy option")
    return RolloutOptions(**values)
