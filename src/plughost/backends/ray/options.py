"""Pure rules of the Ray Serve backend: application names, serve_config -> Serve options,
the replicas' pip list and the replica error text read back from Serve's status.

Nothing here imports ray, so these rules are unit-tested without a cluster.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plughost.backends.base import GroupSpec, StartFailed
from plughost.config import Settings

# Serve retries a failing constructor by itself; one attempt per replica matches a local
# start, which fails on the first replica that cannot load.
CONSTRUCTOR_RETRIES = 1
GRACEFUL_SHUTDOWN_S = 2.0  # in-flight calls were already drained by the group
APP_LOGGING = {"log_level": "WARNING", "enable_access_log": False}
MAX_ERROR_CHARS = 4000

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START_ERROR = re.compile(r"PluginStartError: (.*)\Z", re.DOTALL)


def app_name(deployment_name: str, release_id: int, owner: str) -> str:
    """The Serve application of one release: the deployment name stays readable in Ray's
    tools, the release id lets a new version start beside the live one (blue-green), and the
    owner tag keeps two plughost servers on one cluster out of each other's applications."""
    return f"{deployment_name}__r{release_id}_{owner}"


def release_of_app(name: str, owner: str) -> int | None:
    """The release id of one of this server's applications; None for any other name."""
    match = re.fullmatch(rf"custom_plugin_.+__r(\d+)_{re.escape(owner)}", name)
    return int(match.group(1)) if match else None


def _number(serve_config: Mapping[str, Any], key: str) -> float | None:
    value = serve_config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StartFailed(f"serve_config.{key} must be a number, got {value!r}")
    if value < 0:
        raise StartFailed(f"serve_config.{key} must not be negative, got {value!r}")
    return float(value)


def _count(serve_config: Mapping[str, Any], key: str) -> int | None:
    value = _number(serve_config, key)
    return None if value is None else int(value)


def scaling_options(spec: GroupSpec) -> dict[str, Any]:
    """`num_replicas` when the manifest fixes it; autoscaling from `min_replicas`,
    `max_replicas` and `target_ongoing_requests` when it gives a range."""
    sc = spec.serve_config
    fixed = _count(sc, "num_replicas")
    low, high = _count(sc, "min_replicas"), _count(sc, "max_replicas")
    target = _number(sc, "target_ongoing_requests")
    if fixed is None and (high is not None or target is not None):
        low = 1 if low is None else low
        high = max(low, 1) if high is None else high
        if high < max(low, 1):
            raise StartFailed(f"serve_config.max_replicas ({high}) is below min_replicas ({low})")
        autoscaling: dict[str, Any] = {
            "min_replicas": low,
            "max_replicas": high,
            "initial_replicas": max(low, 1),
        }
        if target is not None and target > 0:
            autoscaling["target_ongoing_requests"] = target
        return {"autoscaling_config": autoscaling}
    count = fixed if fixed is not None else low
    return {"num_replicas": max(1, count) if count is not None else max(1, spec.num_replicas)}


def actor_options(spec: GroupSpec, settings: Settings) -> dict[str, Any]:
    """`num_cpus`, `num_gpus` and `memory_gb` as the replica's Ray resources."""
    sc = spec.serve_config
    cpus = _number(sc, "num_cpus")
    options: dict[str, Any] = {"num_cpus": settings.ray_replica_num_cpus if cpus is None else cpus}
    gpus = _number(sc, "num_gpus")
    if gpus:
        options["num_gpus"] = gpus
    memory_gb = _number(sc, "memory_gb")
    if memory_gb:
        options["memory"] = int(memory_gb * 1024**3)
    return options


def deployment_options(spec: GroupSpec, settings: Settings) -> dict[str, Any]:
    """Options of the release's one Serve deployment (runtime_env added by the backend)."""
    return {
        "name": spec.deployment_name,
        **scaling_options(spec),
        "ray_actor_options": actor_options(spec, settings),
        "max_constructor_retry_count": CONSTRUCTOR_RETRIES,
        "health_check_period_s": settings.ray_health_check_period_s,
        "health_check_timeout_s": max(settings.ray_health_check_period_s * 2, 10.0),
        "graceful_shutdown_timeout_s": GRACEFUL_SHUTDOWN_S,
        "graceful_shutdown_wait_loop_s": 0.5,
    }


def pip_list(
    requirements: tuple[str, ...], missing_here: list[str], settings: Settings
) -> list[str]:
    """The replicas' runtime_env pip list from the manifest's dependencies.

    ``missing`` (default) installs ``missing_here``: the backend passes none, since what the
    server's own environment lacks reaches the replicas in the plugin environment built on
    the server (:mod:`plughost.envs`, shipped as a py_module). ``all`` installs every
    dependency (nodes whose image differs from the server's), ``off`` none (the replica then
    reports what is missing).
    """
    if settings.ray_pip == "off":
        return []
    wanted = list(requirements) if settings.ray_pip == "all" else list(missing_here)
    extra = [p.strip() for p in settings.ray_replica_pip.split(",") if p.strip()]
    return [r for r in dict.fromkeys([*wanted, *extra]) if r.strip()]


def replica_error(message: str) -> str:
    """The replica's own error text inside Serve's status message.

    Serve wraps a failing constructor in a traceback; the plugin's message is what follows
    ``PluginStartError:``. Other failures (a runtime_env that cannot be set up, a replica
    that cannot be scheduled) keep Serve's words.
    """
    text = _ANSI.sub("", message or "").strip()
    match = _START_ERROR.search(text)
    if match:
        return match.group(1).strip()[:MAX_ERROR_CHARS]
    if "Traceback" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[-1].strip()[:MAX_ERROR_CHARS] if lines else text[:MAX_ERROR_CHARS]
    return text[-MAX_ERROR_CHARS:]


@dataclass(frozen=True)
class AppState:
    """What Serve reports of one application (its single deployment folded in)."""

    status: str  # DEPLOYING, RUNNING, DEPLOY_FAILED, UNHEALTHY, DELETING, ...
    message: str = ""
    deployment_status: str = ""
    trigger: str = ""
    running: int = 0
    deployment_message: str = ""

    @property
    def startup_failing(self) -> bool:
        """Replicas fail to start and none serves."""
        return (
            self.status in ("DEPLOY_FAILED", "UNHEALTHY")
            and self.trigger == "REPLICA_STARTUP_FAILED"
            and self.running == 0
        )

    @property
    def error(self) -> str:
        return replica_error(self.deployment_message or self.message)
