"""Ray Serve's scale-from-zero for the hash embedder (issue 17's cold start baseline).

The same plugin class the other Ray figures serve (``bench.ray_app.PluginIngress`` over
``examples/hash_embedder``, default variant), deployed with ``autoscaling_config``
``min_replicas=0, max_replicas=1`` and short delays (``AUTOSCALING`` below). Each round waits
until ``serve.status()`` reports no replica in any state, then times one call from send to
answer through Serve's HTTP proxy (the path every other Ray figure of the bench uses, and the
one plughost's own cold start is timed on), ``SETTLE_S`` after the last replica is gone.

:func:`run` is called by ``bench.elastic.run`` next to plughost's own from-zero rounds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.plughost_sys import EXAMPLES
from bench.ray_sys import RayServeHost, ray_available

APP = "bench_zero_ray"
# Ray 2.60's AutoscalingConfig: no upscale delay, down to zero 1 s after the last call, and a
# short metrics window so "no requests" is seen soon (defaults: 30 s, 600 s for zero, 30 s).
AUTOSCALING = {
    "min_replicas": 0,
    "max_replicas": 1,
    "initial_replicas": 0,
    "target_ongoing_requests": 1,
    "upscale_delay_s": 0,
    "downscale_delay_s": 1,
    "downscale_to_zero_delay_s": 1,
    "metrics_interval_s": 0.5,
    "look_back_period_s": 1,
}
SETTLE_S = 1.0
ZERO_TIMEOUT_S = 120.0


def wait_for_zero(host: RayServeHost, timeout: float = ZERO_TIMEOUT_S) -> float:
    """Block until the application has no replica (any state); returns the seconds waited."""
    started = time.monotonic()
    while True:
        status = host.status(APP)
        if status.get("app_status") is not None and not any(status["replicas"].values()):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"Ray Serve did not scale {APP} to zero in {timeout:.0f} s")
        time.sleep(0.2)


def run(home: Path, rounds: int, settle_s: float = SETTLE_S) -> dict[str, Any]:
    """``rounds`` calls at zero replicas on a private Ray cluster; skipped with a note when
    ``ray[serve]`` is not importable or the cluster does not come up."""
    why_not = ray_available()
    if why_not:
        return {"skipped": why_not}
    host = RayServeHost("default", num_cpus=2, log_dir=home / "logs")
    started = time.monotonic()
    try:
        host.start()
        host.deploy(APP, EXAMPLES / "hash_embedder", options={"autoscaling_config": AUTOSCALING})
        times, waits = [], []
        body = {"inputs": {"text": "hello"}, "parameters": {}}
        with httpx.Client(timeout=120) as client:
            for _ in range(rounds):
                waits.append(wait_for_zero(host))
                time.sleep(settle_s)
                t0 = time.monotonic()
                resp = client.post(host.app_url(APP), json=body)
                times.append(time.monotonic() - t0)
                if resp.status_code != 200:
                    raise RuntimeError(f"Ray Serve answered {resp.status_code}: {resp.text}")
        return {
            "cold_start_s": times,
            "cold_start_median_s": statistics.median(times),
            "seconds_to_zero_s": waits,
            "path": "HTTP through Serve's proxy",
            "autoscaling_config": AUTOSCALING,
            "wall_s": time.monotonic() - started,
        }
    except Exception as exc:  # noqa: BLE001 - a baseline that fails is reported, not fatal
        return {"skipped": f"Ray Serve scale-from-zero failed: {type(exc).__name__}: {exc}"}
    finally:
        host.stop()
