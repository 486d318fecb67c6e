"""The Ray backend's pure rules: application names, serve_config mapping, pip list, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plughost.backends.base import GroupSpec, StartFailed
from plughost.backends.ray.options import (
    AppState,
    actor_options,
    app_name,
    deployment_options,
    pip_list,
    release_of_app,
    replica_error,
    scaling_options,
)
from plughost.config import Settings


def spec(serve_config: dict[str, Any] | None = None, num_replicas: int = 1) -> GroupSpec:
    return GroupSpec(
        deployment_name="custom_plugin_text_embed_1_0_0",
        release_id=12,
        plugin_dir=Path("/nowhere"),
        num_replicas=num_replicas,
        serve_config=serve_config or {},
    )


def test_app_name_keeps_the_deployment_name_and_round_trips_the_release() -> None:
    name = app_name("custom_plugin_text_embed_1_0_0", 12, "a1b2c3d4")
    assert name.startswith("custom_plugin_text_embed_1_0_0")
    assert release_of_app(name, "a1b2c3d4") == 12


@pytest.mark.parametrize(
    "name",
    [
        "custom_plugin_text_embed_1_0_0__r12_ffffffff",  # another server's application
        "custom_plugin_text_embed_1_0_0",  # not ours at all
        "default",
        "custom_plugin_x__r12_a1b2c3d4_extra",
        "custom_plugin_x__rX_a1b2c3d4",
    ],
)
def test_foreign_application_names_are_not_ours(name: str) -> None:
    assert release_of_app(name, "a1b2c3d4") is None


def test_num_replicas_is_a_fixed_count() -> None:
    assert scaling_options(spec({"num_replicas": 3})) == {"num_replicas": 3}
    assert scaling_options(spec({}, num_replicas=2)) == {"num_replicas": 2}
    assert scaling_options(spec({"min_replicas": 2})) == {"num_replicas": 2}


def test_a_replica_range_becomes_autoscaling() -> None:
    out = scaling_options(
        spec({"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 3})
    )
    assert out == {
        "autoscaling_config": {
            "min_replicas": 1,
            "max_replicas": 4,
            "initial_replicas": 1,
            "target_ongoing_requests": 3.0,
        }
    }
    zero = scaling_options(spec({"min_replicas": 0, "max_replicas": 2}))["autoscaling_config"]
    assert zero["min_replicas"] == 0 and zero["initial_replicas"] == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num_replicas": "two"}, "serve_config.num_replicas must be a number"),
        ({"num_cpus": True}, "serve_config.num_cpus must be a number"),
        ({"num_gpus": -1}, "must not be negative"),
        ({"min_replicas": 3, "max_replicas": 2}, "below min_replicas"),
        ({"memory_gb": float("nan")}, "serve_config.memory_gb must be a number"),
    ],
)
def test_invalid_serve_config_fails_the_start_with_a_reason(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(StartFailed, match=message):
        deployment_options(spec(config), Settings())


def test_resources_map_to_ray_actor_options() -> None:
    settings = Settings(ray_replica_num_cpus=0.25)
    assert actor_options(spec({}), settings) == {"num_cpus": 0.25}
    out = actor_options(spec({"num_cpus": 2, "num_gpus": 1, "memory_gb": 1.5}), settings)
    assert out == {"num_cpus": 2.0, "num_gpus": 1.0, "memory": 1536 * 1024 * 1024}


def test_deployment_is_named_after_the_deployment_and_fails_fast() -> None:
    options = deployment_options(spec({"num_replicas": 2}), Settings())
    assert options["name"] == "custom_plugin_text_embed_1_0_0"
    assert options["num_replicas"] == 2
    assert options["max_constructor_retry_count"] == 1


def test_pip_list_follows_the_ray_pip_mode() -> None:
    reqs = ("torch", "numpy>=1.20")
    assert pip_list(reqs, ["numpy>=1.20"], Settings()) == ["numpy>=1.20"]
    assert pip_list(reqs, [], Settings(ray_pip="all")) == ["torch", "numpy>=1.20"]
    assert pip_list(reqs, ["torch"], Settings(ray_pip="off")) == []
    assert pip_list((), [], Settings()) == []
    extra = Settings(ray_replica_pip="orjson, torch")
    assert pip_list(reqs, ["torch"], extra) == ["torch", "orjson"]


SERVE_MESSAGE = (
    "The deployment failed to start 1 times in a row. This may be due to a problem with its "
    "constructor or initial health check failing. See controller logs for details. Error:\n"
    "\x1b[36mray::ServeReplica:app:dep.initialize_and_get_metadata()\x1b[39m (pid=1, ip=x)\n"
    '  File "replica.py", line 1928, in initialize\n'
    "    raise RuntimeError(traceback.format_exc()) from None\n"
    "RuntimeError: Traceback (most recent call last):\n"
    '  File "ray_replica.py", line 90, in __init__\n'
    "plughost.backends.ray.replica.PluginStartError: RuntimeError: model weights missing\n"
    "  second line of the message"
)


def test_replica_error_is_the_plugins_own_text() -> None:
    assert replica_error(SERVE_MESSAGE) == (
        "RuntimeError: model weights missing\n  second line of the message"
    )


def test_other_errors_keep_serves_words() -> None:
    trace = "Traceback (most recent call last):\n  File x\nRuntimeEnvSetupError: pip failed\n"
    assert replica_error(trace) == "RuntimeEnvSetupError: pip failed"
    plain = "Deployment has 1 replicas that have taken more than 30s to be scheduled."
    assert replica_error(plain) == plain
    assert replica_error("") == ""


def test_startup_failing_needs_no_serving_replica() -> None:
    failing = AppState("UNHEALTHY", trigger="REPLICA_STARTUP_FAILED", running=0)
    assert failing.startup_failing
    assert not AppState("UNHEALTHY", trigger="REPLICA_STARTUP_FAILED", running=1).startup_failing
    assert not AppState("UNHEALTHY", trigger="HEALTH_CHECK_FAILED", running=0).startup_failing
    assert not AppState("RUNNING").startup_failing
