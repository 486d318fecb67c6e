"""The deploy body (ours, beyond the SDK): rollout options, for the OpenAPI document.

The route reads the body as a JSON object and checks it with
:func:`plughost.domain.rollout.parse_rollout`, which names the bad option in its 422; this
model describes the same fields and defaults."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from plughost.api.schemas import JSON_NUMBER, JsonInt, JsonNumber

# a JSON integer 1..100 (bounds ahead of the type check, so the JSON schema keeps them)
Percent = Annotated[int, Field(ge=1, le=100), JSON_NUMBER]


class DeployOptions(BaseModel):
    """Optional body of POST .../deploy; no body: today's blue-green (no bake window)."""

    model_config = ConfigDict(extra="forbid")
    strategy: Literal["blue_green", "canary"] = Field(
        default="blue_green", description="canary: shift the alias's traffic in steps"
    )
    canary_steps: list[Percent] = Field(
        default=[10, 50, 100],
        min_length=1,
        max_length=20,
        description="percent of the alias's calls per step; rising strictly, ends at 100",
    )
    step_seconds: JsonNumber = Field(default=30.0, ge=0.1, le=3600, description="length of a step")
    bake_seconds: JsonNumber = Field(
        default=30.0, ge=0, le=3600, description="blue-green: watch after the switch; 0 = off"
    )
    max_error_rate: JsonNumber = Field(
        default=0.01, ge=0, le=1, description="error rate allowed above the old version's"
    )
    min_failed_calls: JsonInt = Field(
        default=5, ge=1, le=100_000, description="failed calls before the error rate counts"
    )
    max_p99_ratio: JsonNumber = Field(
        default=2.0, ge=1, le=1000, description="p99 allowed, as a multiple of the old one's"
    )
    min_p99_ms: JsonNumber = Field(
        default=50.0, ge=0, le=600_000, description="p99 below this never fails a rollout"
    )
    traffic_deadline_seconds: JsonNumber = Field(
        default=300.0,
        ge=1,
        le=86_400,
        description="a canary step without traffic waits this long, then keeps the old version",
    )
