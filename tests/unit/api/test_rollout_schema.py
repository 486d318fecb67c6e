"""The deploy body's wire schema (plughost.api.rollout_schema) is built from the domain's
rollout options: the same defaults, and a value at either end of a range is accepted by both
while one just past it is refused by both."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError as WireError

from plughost.api.rollout_schema import DeployOptions
from plughost.domain.rollout import LIMITS, STRATEGIES, RolloutOptions, parse_rollout
from plughost.errors import ValidationError


def test_the_wire_defaults_are_the_domains() -> None:
    assert DeployOptions().model_dump() == RolloutOptions().to_json()


def test_the_wire_names_the_domains_strategies() -> None:
    schema = DeployOptions.model_json_schema()["properties"]["strategy"]
    assert tuple(schema["enum"]) == STRATEGIES


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_both_accept_the_ends_of_each_range(name: str) -> None:
    for value in LIMITS[name]:
        body: dict[str, Any] = {name: value}
        DeployOptions.model_validate(body)
        assert parse_rollout(body).to_json()[name] == value


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_both_refuse_a_value_past_a_range(name: str) -> None:
    body = {name: LIMITS[name][1] + 1}
    with pytest.raises(WireError):
        DeployOptions.model_validate(body)
    with pytest.raises(ValidationError, match=name):
        parse_rollout(body)


@pytest.mark.parametrize("steps", [[], [0, 100], [50, 101], list(range(80, 101))])
def test_both_refuse_bad_canary_steps_the_schema_can_see(steps: list[int]) -> None:
    with pytest.raises(WireError):
        DeployOptions.model_validate({"canary_steps": steps})
    with pytest.raises(ValidationError, match="canary_steps"):
        parse_rollout({"canary_steps": steps})
