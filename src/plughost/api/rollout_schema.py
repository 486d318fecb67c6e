"""The deploy body (ours, beyond the SDK): rollout options, for the OpenAPI document.

The route reads the body as a JSON object and checks it with
:func:`plughost.domain.rollout.parse_rollout`, which names the bad option in its 422. This
model takes each option's default and accepted range from :mod:`plughost.domain.rollout`,
so the two never disagree; only the descriptions are the wire's own."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from plughost.api.schemas import JSON_NUMBER, JsonInt, JsonNumber
from plughost.domain.rollout import LIMITS, PERCENT_RANGE, STEPS_RANGE, RolloutOptions, Strategy

_DEFAULTS = RolloutOptions().to_json()

# a JSON integer 1..100 (bounds ahead of the type check, so the JSON schema keeps them)
Percent = Annotated[int, Field(ge=PERCENT_RANGE[0], le=PERCENT_RANGE[1]), JSON_NUMBER]


def _option(name: str, description: str) -> Any:
    """The field of option ``name``: the domain's default and range, and ``description``."""
    low, high = LIMITS[name]
    return Field(default=_DEFAULTS[name], ge=low, le=high, description=description)


class DeployOptions(BaseModel):
    """Optional body of POST .../deploy; no body: today's blue-green (no bake window)."""

    model_config = ConfigDict(extra="forbid")
    strategy: Strategy = Field(
        default=_DEFAULTS["strategy"], description="canary: shift the alias's traffic in steps"
    )
    canary_steps: list[Percent] = Field(
        default=_DEFAULTS["canary_steps"],
        min_length=STEPS_RANGE[0],
        max_length=STEPS_RANGE[1],
        description="percent of the alias's calls per step; rising strictly, ends at 100",
    )
    step_seconds: JsonNumber = _option("step_seconds", "length of a step")
    bake_seconds: JsonNumber = _option(
        "bake_seconds", "blue-green: watch after the switch; 0 = off"
    )
    max_error_rate: JsonNumber = _option(
        "max_error_rate", "error rate allowed above the old version's"
    )
    min_failed_calls: JsonInt = _option(
        "min_failed_calls", "failed calls before the error rate counts"
    )
    max_p99_ratio: JsonNumber = _option(
        "max_p99_ratio", "p99 allowed, as a multiple of the old one's"
    )
    min_p99_ms: JsonNumber = _option("min_p99_ms", "p99 below this never fails a rollout")
    traffic_deadline_seconds: JsonNumber = _option(
        "traffic_deadline_seconds",
        "a canary step without traffic waits this long, then keeps the old version",
    )
