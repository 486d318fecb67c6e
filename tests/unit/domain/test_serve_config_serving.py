"""The serving keys of a serve_config (plughost.domain.serve_config): their ranges at intake
(serving_errors), the replica's ``--serving`` option built from them (serving_option) and the
release's request deadline (request_timeout_of)."""

from __future__ import annotations

import json
import math

import pytest

from plughost.domain.serve_config import (
    request_timeout_of,
    serving_errors,
    serving_option,
)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"num_replicas": 3},
        {"max_batch_size": 1},
        {"max_batch_size": 256},
        {"batch_wait_timeout_s": 0},
        {"batch_wait_timeout_s": 1},
        {"batch_wait_timeout_s": 0.25},
        {"request_timeout_s": 0.001},
        {"request_timeout_s": 3600},
        {"request_timeout_s": 30.5},
        {"max_batch_size": 32, "batch_wait_timeout_s": 0.01, "request_timeout_s": 60},
        {"max_batch_size": None, "batch_wait_timeout_s": None, "request_timeout_s": None},
    ],
)
def test_serving_keys_in_range_or_absent_are_accepted(config: dict[str, object]) -> None:
    assert serving_errors(config) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_batch_size", 0),
        ("max_batch_size", -1),
        ("max_batch_size", 257),
        ("max_batch_size", 2.0),  # whole numbers only
        ("max_batch_size", True),
        ("max_batch_size", "4"),
        ("batch_wait_timeout_s", -0.001),
        ("batch_wait_timeout_s", 1.001),
        ("batch_wait_timeout_s", True),
        ("batch_wait_timeout_s", "0.1"),
        ("batch_wait_timeout_s", math.nan),
        ("request_timeout_s", 0),
        ("request_timeout_s", -5),
        ("request_timeout_s", 3600.5),
        ("request_timeout_s", True),
        ("request_timeout_s", False),
        ("request_timeout_s", "30"),
        ("request_timeout_s", math.inf),
        ("request_timeout_s", math.nan),
    ],
)
def test_serving_keys_out_of_range_or_of_the_wrong_type_are_refused(
    key: str, value: object
) -> None:
    errors = serving_errors({key: value})
    assert len(errors) == 1
    assert errors[0].startswith(f"serve_config.{key} ") and repr(value) in errors[0]


def test_every_bad_key_is_named() -> None:
    errors = serving_errors(
        {"max_batch_size": 0, "batch_wait_timeout_s": 2, "request_timeout_s": 0}
    )
    assert [e.split(" ")[0] for e in errors] == [
        "serve_config.max_batch_size",
        "serve_config.batch_wait_timeout_s",
        "serve_config.request_timeout_s",
    ]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, None),
        ({"max_batch_size": 1}, None),  # a batch of one is no batching
        ({"max_batch_size": True}, None),
        ({"batch_wait_timeout_s": 0.5}, None),  # a wait without batching means nothing
        ({"max_batch_size": 8}, {"max_batch_size": 8, "batch_wait_timeout_s": 0.01}),
        (
            {"max_batch_size": 8, "batch_wait_timeout_s": 0.2},
            {"max_batch_size": 8, "batch_wait_timeout_s": 0.2},
        ),
        (
            {"max_batch_size": 8, "batch_wait_timeout_s": 0},
            {"max_batch_size": 8, "batch_wait_timeout_s": 0.0},
        ),
        (
            {"max_batch_size": 8, "batch_wait_timeout_s": True},
            {"max_batch_size": 8, "batch_wait_timeout_s": 0.01},
        ),
        ({"max_batch_size": 1000}, {"max_batch_size": 256, "batch_wait_timeout_s": 0.01}),
        ({"request_timeout_s": 30}, {"request_timeout_s": 30.0}),
        ({"request_timeout_s": 0}, None),
        ({"request_timeout_s": True}, None),
        (
            {"max_batch_size": 4, "batch_wait_timeout_s": 0.05, "request_timeout_s": 2.5},
            {"max_batch_size": 4, "batch_wait_timeout_s": 0.05, "request_timeout_s": 2.5},
        ),
    ],
)
def test_the_serving_option_is_json_of_what_the_replica_must_apply(
    config: dict[str, object], expected: dict[str, object] | None
) -> None:
    option = serving_option(config)
    if expected is None:
        assert option is None
    else:
        assert option is not None
        assert json.loads(option) == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, 60.0),
        ({"request_timeout_s": 12}, 12.0),
        ({"request_timeout_s": 0.5}, 0.5),
        ({"request_timeout_s": 0}, 60.0),
        ({"request_timeout_s": -1}, 60.0),
        ({"request_timeout_s": True}, 60.0),
        ({"request_timeout_s": "12"}, 60.0),
        ({"request_timeout_s": None}, 60.0),
    ],
)
def test_the_request_deadline_is_the_serve_configs_else_the_default(
    config: dict[str, object], expected: float
) -> None:
    value = request_timeout_of(config, 60.0)
    assert value == expected and isinstance(value, float)
