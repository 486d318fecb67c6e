"""The rollout guard (issue 17): its options, its judge, the route split, and the controller
driving canary steps and bake windows against the FakeBackend under a simulated load."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from test_controller import NS, Harness, run

from plughost.control.canary import breach
from plughost.domain.rollout import RolloutOptions, parse_rollout
from plughost.domain.states import Status
from plughost.errors import PlughostError, ValidationError
from plughost.metrics.window import Figures

# -- options ----------------------------------------------------------------------------------


def test_no_body_means_todays_blue_green_and_a_body_the_30_s_bake() -> None:
    plain = parse_rollout(None)
    assert (plain.strategy, plain.bake_seconds) == ("blue_green", 0.0)
    opts = parse_rollout({})
    assert (opts.strategy, opts.bake_seconds, opts.canary_steps) == (
        "blue_green",
        30.0,
        (10, 50, 100),
    )
    assert RolloutOptions.from_json(opts.to_json()) == opts


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"strategy": "yolo"}, "strategy"),
        ({"canary_steps": [50, 10, 100]}, "canary_steps"),
        ({"canary_steps": [10, 50]}, "canary_steps"),
        ({"canary_steps": [0, 100]}, "canary_steps"),
        ({"canary_steps": "10,100"}, "canary_steps"),
        ({"step_seconds": 0}, "step_seconds"),
        ({"bake_seconds": -1}, "bake_seconds"),
        ({"max_error_rate": 1.5}, "max_error_rate"),
        ({"min_failed_calls": 2.5}, "min_failed_calls"),
        ({"min_failed_calls": True}, "min_failed_calls"),
        ({"max_p99_ratio": "2"}, "max_p99_ratio"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_option_is_a_422_naming_it(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_rollout(body)
    err: PlughostError = caught.value
    assert err.status_code == 422 and field in str(err)


# -- the judge --------------------------------------------------------------------------------

OPTS = RolloutOptions()


def figs(requests: int, errors: int = 0, p99: float | None = 5.0) -> Figures:
    return Figures(requests, errors, p99, p99, 10.0)


def test_error_rate_above_the_old_ones_is_a_breach_naming_the_figures() -> None:
    why = breach(OPTS, figs(30, 9), figs(100, 0))
    assert why is not None and "error rate 30.0%" in why and "9 of 30" in why


def test_too_few_failed_calls_or_an_equally_bad_old_version_is_not_a_breach() -> None:
    assert breach(OPTS, figs(10, 4), figs(100, 0)) is None  # below min_failed_calls
    assert breach(OPTS, figs(100, 10), figs(100, 10)) is None  # the old one fails as often


def test_a_slower_p99_is_a_breach_only_above_the_floor_and_the_ratio() -> None:
    why = breach(OPTS, figs(60, p99=200.0), figs(100, p99=10.0))
    assert why is not None and "latency p99 200 ms" in why
    assert breach(OPTS, figs(60, p99=40.0), figs(100, p99=2.0)) is None  # under min_p99_ms
    assert breach(OPTS, figs(60, p99=150.0), figs(100, p99=100.0)) is None  # 1.5x < 2x
    assert breach(OPTS, figs(60, p99=900.0), None) is None  # nothing to compare with
    assert breach(OPTS, figs(15, p99=900.0), figs(100, p99=10.0)) is None  # too few calls yet


# -- the controller, the route split and the counters -----------------------------------------

FAST = {"step_seconds": 0.3, "bake_seconds": 0.3, "traffic_deadline_seconds": 1.5}


async def _load(h: Harness, name: str, stop: asyncio.Event, outcomes: list[Any]) -> None:
    body = orjson.dumps({"inputs": {}, "parameters": {}})
    while not stop.is_set():
        try:
            outcomes.append(orjson.loads(await h.inference.infer_body(NS, name, body))["release"])
        except PlughostError as exc:
            outcomes.append(type(exc).__name__)
        await asyncio.sleep(0.002)


async def _rollout_under_load(
    h: Harness,
    options: dict[str, Any],
    fail_share: float = 0.0,
    delay_s: float = 0.0,
    load: bool = True,
) -> tuple[int, int, list[Any]]:
    h.controller.request_metrics = h.inference.request_metrics
    v1 = h.enqueue(h.plugin("alpha", "1.0.0"))
    await h.settle()
    p2 = h.plugin("alpha", "2.0.0")
    stop, outcomes = asyncio.Event(), []
    loaders = [asyncio.create_task(_load(h, "alpha", stop, outcomes)) for _ in range(4 * load)]
    await asyncio.sleep(0.05)
    v2 = h.releases.enqueue(NS, p2, "queued", parse_rollout(options).to_json())
    h.backend.fault(v2.id, fail_share, delay_s)
    await h.settle(rounds=2000)
    stop.set()
    await asyncio.gather(*loaders)
    return v1.id, v2.id, outcomes


def test_a_canary_that_fails_30_percent_is_rolled_back_with_its_figures(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    opts = {"strategy": "canary", "canary_steps": [10, 50, 100], **FAST}
    v1, v2, outcomes = run(lambda: _rollout_under_load(h, opts, fail_share=0.3))
    rel = h.releases.get(v2)
    assert rel is not None and rel.status is Status.FAILED
    assert "rolled back at canary step" in (rel.error or "") and "error rate" in (rel.error or "")
    assert h.route("alpha") == v1 and h.releases.alias(NS, "alpha") == v1
    assert h.routes.lookup(NS, "alpha").canary is None  # type: ignore[union-attr]
    failed = outcomes.count("PluginRuntimeError")
    assert failed >= 5 and failed < 0.3 * len(outcomes) * 0.6  # bounded by the step's share
    assert h.status(h.releases.get(v1)) is Status.DEPLOYED  # type: ignore[arg-type]


def test_a_bake_window_rolls_back_a_failing_blue_green_switch(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    v1, v2, outcomes = run(lambda: _rollout_under_load(h, FAST, fail_share=0.3))
    rel = h.releases.get(v2)
    assert rel is not None and rel.status is Status.FAILED
    assert "blue-green bake window" in (rel.error or "")
    assert h.route("alpha") == v1 and h.releases.alias(NS, "alpha") == v1
    assert outcomes[-1] == v1


def test_a_20x_slower_canary_is_rolled_back_on_latency(harness: Callable[..., Harness]) -> None:
    h = harness()
    opts = {"strategy": "canary", "canary_steps": [50, 100], **FAST, "step_seconds": 1.0}
    opts["min_p99_ms"] = 10
    v1, v2, _ = run(lambda: _rollout_under_load(h, opts, delay_s=0.04))
    rel = h.releases.get(v2)
    assert rel is not None and rel.status is Status.FAILED and "latency p99" in (rel.error or "")
    assert h.route("alpha") == v1


def test_a_healthy_canary_is_promoted_through_every_step(harness: Callable[..., Harness]) -> None:
    h = harness()
    opts = {"strategy": "canary", "canary_steps": [20, 60, 100], **FAST}
    v1, v2, outcomes = run(lambda: _rollout_under_load(h, opts))
    assert h.path(h.releases.get(v2))[-1] == "deployed"  # type: ignore[arg-type]
    assert h.route("alpha") == v2 and h.releases.alias(NS, "alpha") == v2
    assert set(outcomes) == {v1, v2}
    assert h.status(h.releases.get(v1)) is Status.DEPLOYED  # another version: kept, off the alias


def test_a_canary_step_without_traffic_keeps_the_old_version_and_says_why(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    opts = {"strategy": "canary", **FAST}
    v1, v2, _ = run(lambda: _rollout_under_load(h, opts, load=False))
    rel = h.releases.get(v2)
    assert rel is not None and rel.status is Status.FAILED
    assert "kept the old version" in (rel.error or "") and "no call" in (rel.error or "")
    assert h.route("alpha") == v1


def test_a_bake_window_without_traffic_passes(harness: Callable[..., Harness]) -> None:
    h = harness()
    _, v2, _ = run(lambda: _rollout_under_load(h, FAST, load=False))
    assert h.route("alpha") == v2
