"""Rollout options of a deploy (issue 17): the strategy and the guard's thresholds.

A deploy without a body (the SDK's call) means today's blue-green: the switch with no bake
window, so a client that knows nothing of guards gets exactly what it always got. A body turns
the guard on, with these defaults for what it leaves out (a 30 s bake for blue-green). The
options are stored with the release (``releases.rollout``, JSON) so a restart drives the same rollout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

from plughost.errors import ValidationError

STRATEGIES = ("blue_green", "canary")


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

    strategy: str = "blue_green"
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


_NUMBERS: dict[str, tuple[float, float]] = {  # name -> (lowest, highest) accepted
    "step_seconds": (0.1, 3600.0),
    "bake_seconds": (0.0, 3600.0),
    "max_error_rate": (0.0, 1.0),
    "max_p99_ratio": (1.0, 1000.0),
    "min_p99_ms": (0.0, 600_000.0),
    "traffic_deadline_seconds": (1.0, 86_400.0),
}


def _bad(field: str, why: str) -> ValidationError:
    return ValidationError(f"deploy option {field!r} {why}", {"field": field})


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(field, "must be a number")
    low, high = _NUMBERS[field]
    if not low <= value <= high:
        raise _bad(field, f"must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _steps(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or len(value) > 20:
        raise _bad("canary_steps", "must be a list of 1 to 20 percentages")
    if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100 for v in value):
        raise _bad("canary_steps", "must hold whole percentages between 1 and 100")
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
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
                raise _bad(key, "must be a whole number between 1 and 100000")
            values[key] = value
        elif key in _NUMBERS:
            values[key] = _number(key, value)
        elif value is not None:
            raise _bad(key, "is not a deploy option")
    return RolloutOptions(**values)
