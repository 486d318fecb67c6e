"""Control-plane runs: deploy and redeploy times, redeploys under load, status under load, a
queue of many deployments.

Alone: ``python -m bench.controlplane [--n 10]`` starts two local servers side by side, one
with the replica pool (the default) and one without (``PLUGHOST_REPLICA_POOL=0``: every
replica starts cold, as before the pool), and times deploy -> `deployed` of a fresh hash16
plugin and its blue-green redeploy on each, interleaved (A B, A B), polling every 2 ms."""

from __future__ import annotations

import io
import logging
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.load import BackgroundLoad, LoadSpec, run_load
from bench.plughost_sys import BenchError, PlughostServer, zip_plugin
from bench.settings import Profile
from bench.systems import PLUGINS, Systems

log = logging.getLogger("bench")

POLL_S = 0.002  # the deploy goal is measured by a client polling the status this often


def deploy_wait(server: PlughostServer, plugin_id: str, timeout: float = 180.0) -> float:
    """Seconds from the deploy POST until the status says `deployed` (a new release),
    polling every :data:`POLL_S`."""
    before = server.status(plugin_id).get("release_id")
    t0 = time.perf_counter()
    server.deploy(plugin_id)
    server.wait_deployed(plugin_id, after_release=before, timeout=timeout, poll=POLL_S)
    return time.perf_counter() - t0


def upload_many(server: PlughostServer, names: list[str], workers: int) -> list[str]:
    archive = zip_plugin(PLUGINS["hash16"])
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda n: server.upload(n, archive), names))


def undeploy_many(server: PlughostServer, plugin_ids: list[str], workers: int = 8) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(server.undeploy, plugin_ids))
    return time.perf_counter() - t0


def deploy_times(systems: Systems, profile: Profile) -> dict[str, Any]:
    """Fresh deploy -> `deployed`, plughost and Ray Serve's serve.run interleaved (A B, A B)."""
    server = systems.plughost
    assert server is not None
    ids = upload_many(
        server, [f"bench_deploy_{i}" for i in range(profile.deploy_n)], profile.upload_workers
    )
    ray_host = systems.ray_hosts.get("default")
    ph_ray = systems.plughost_ray
    ray_ids: list[str] = []
    if ph_ray is not None and profile.plughost_ray_deploy_n:
        try:
            ray_ids = upload_many(
                ph_ray, [f"bench_rdeploy_{i}" for i in range(profile.plughost_ray_deploy_n)], 2
            )
        except BenchError as exc:
            systems.skipped["plughost-ray deploy"] = str(exc)
    out: dict[str, Any] = {"plughost": [], "ray_serve_run": [], "plughost_ray": [], "errors": []}
    for i in range(max(len(ids), profile.ray_deploy_n, len(ray_ids))):
        if i < len(ids):
            out["plughost"].append(deploy_wait(server, ids[i]))
        if ray_host is not None and i < profile.ray_deploy_n:
            app = f"deploytime{i}"
            try:
                out["ray_serve_run"].append(ray_host.deploy(app, PLUGINS["hash16"]))
                ray_host.delete(app)
            except BenchError as exc:
                out["errors"].append(f"ray serve.run: {exc}")
        if ph_ray is not None and i < len(ray_ids):
            try:
                out["plughost_ray"].append(ph_ray.deploy_and_wait(ray_ids[i]))
            except BenchError as exc:
                out["errors"].append(f"plughost-ray deploy: {exc}")
        log.info(
            "deploy %d: plughost %s  ray serve.run %s  plughost-ray %s",
            i,
            _last(out["plughost"]),
            _last(out["ray_serve_run"]),
            _last(out["plughost_ray"]),
        )
    if ray_host is None:
        out["ray_note"] = systems.skipped.get("ray-serve", "Ray Serve baseline not running")
    out["plugin_ids"] = ids
    return out


def _last(values: list[float]) -> str:
    return f"{values[-1]:.3f}s" if values else "-"


def redeploy_times(server: PlughostServer, plugin_id: str, n: int) -> list[float]:
    """Blue-green redeploys of a deployed plugin, each until its new release is `deployed`."""
    return [deploy_wait(server, plugin_id) for _ in range(n)]


def redeploys_under_load(server: PlughostServer, n: int, concurrency: int) -> dict[str, Any]:
    """Load on route_prefix and alias (half each) while the plugin is redeployed n times."""
    pid = server.upload("bench_bluegreen", zip_plugin(PLUGINS["hash16"]))
    server.deploy_and_wait(pid)
    spec = LoadSpec(
        [server.route_url(pid), server.alias_url("bench_bluegreen")],
        headers=[server.auth_header],
        concurrency=concurrency,
    )
    load = BackgroundLoad(spec).start()
    time.sleep(1.0)
    times = []
    try:
        for _ in range(n):
            times.append(server.deploy_and_wait(pid))
        time.sleep(0.5)
    finally:
        result = load.stop()
    server.undeploy(pid)
    return {
        "redeploys": len(times),
        "redeploy_s": times,
        "concurrency": concurrency,
        "requests": result["requests"],
        "ok": result["ok"],
        "failed": result["failed"],
        "errors": result.get("errors", {}),
        "error_samples": result.get("error_samples", []),
        "rps": result["rps"],
        "p99_us": result["p99_us"],
        "max_us": result["max_us"],
    }


def status_under_deployments(
    server: PlughostServer, profile: Profile, prefer_wrk: bool, quiet_plugin: str | None = None
) -> dict[str, Any]:
    """GET status at concurrency c while `status_deployments` fresh deployments roll out;
    first the same load with no deployment running (the endpoint's own cost)."""
    n = profile.status_deployments
    quiet: dict[str, Any] = {}
    if quiet_plugin:
        quiet = run_load(
            LoadSpec(
                [server.status_url(quiet_plugin)],
                method="GET",
                body="",
                headers=[server.auth_header],
                concurrency=profile.status_c,
                duration=max(1.0, profile.status_duration_s / 2),
            ),
            prefer_wrk=prefer_wrk,
        )
    ids = upload_many(server, [f"bench_status_{i}" for i in range(n)], profile.upload_workers)
    t0 = time.perf_counter()
    for pid in ids:
        server.deploy(pid)
    spec = LoadSpec(
        [server.status_url(pid) for pid in ids],
        method="GET",
        body="",
        headers=[server.auth_header],
        concurrency=profile.status_c,
        duration=profile.status_duration_s,
    )
    result = run_load(spec, prefer_wrk=prefer_wrk)
    load_end = time.perf_counter() - t0
    deployed_at_end = sum(1 for pid, d in server.list_deployed().items() if pid in ids and d)
    for pid in ids:
        server.wait_deployed(pid, timeout=300, poll=0.1)
    all_done = time.perf_counter() - t0
    undeploy_many(server, ids)
    return {
        "deployments": n,
        "concurrency": profile.status_c,
        "rps": result["rps"],
        "p50_us": result["p50_us"],
        "p99_us": result["p99_us"],
        "failed": result["failed"],
        "tool": result["tool"],
        "load_s": load_end,
        "deployed_when_load_ended": deployed_at_end,
        "all_deployed_after_s": all_done,
        "quiet": {k: quiet[k] for k in ("rps", "p50_us", "p99_us", "failed")} if quiet else {},
    }


def queue_many(server: PlughostServer, profile: Profile) -> dict[str, Any]:
    """`queue_n` deployments POSTed at once; time until every one is `deployed`."""
    n = profile.queue_n
    t_up = time.perf_counter()
    ids = upload_many(server, [f"bench_queue_{i}" for i in range(n)], profile.upload_workers)
    upload_s = time.perf_counter() - t_up
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(server.deploy, ids))
    posted_s = time.perf_counter() - t0
    wanted = set(ids)
    deadline = time.monotonic() + max(300.0, 6.0 * n)
    progress: list[tuple[float, int]] = []
    deployed = 0
    while time.monotonic() < deadline:
        listing = server.list_deployed()
        deployed = sum(1 for pid in wanted if listing.get(pid))
        elapsed = time.perf_counter() - t0
        if not progress or progress[-1][1] != deployed:
            progress.append((round(elapsed, 2), deployed))
        if deployed == n:
            break
        time.sleep(0.2)
    total_s = time.perf_counter() - t0
    statuses: dict[str, int] = {}
    for pid in ids:
        st = server.status(pid)["status"]
        statuses[st] = statuses.get(st, 0) + 1
    undeploy_s = undeploy_many(server, ids)
    return {
        "queued": n,
        "deployed": deployed,
        "statuses": statuses,
        # a deployment the server forgot (no release at all) reads not_deployed
        "lost": statuses.get("not_deployed", 0),
        "failed": statuses.get("failed", 0),
        "unfinished": sum(statuses.get(k, 0) for k in ("queued", "pending", "in_progress")),
        "post_all_s": posted_s,
        "total_s": total_s,
        "upload_s": upload_s,
        "undeploy_all_s": undeploy_s,
        "progress": progress,
    }


ENV_DEPENDENCY = "inflection==0.5.1"  # small, pure Python, no dependencies, not in the base set
ENV_ROUNDS = 3


def _with_dependency(archive: bytes, dependency: str) -> bytes:
    """The hash embedder's zip with ``dependency`` added to its manifest's dependencies."""
    src = zipfile.ZipFile(io.BytesIO(archive))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "manifest.py":
                data += f"\ndependencies = [{dependency!r}]\n".encode()
            out.writestr(item, data)
    return buf.getvalue()


def env_deploy_times(server: PlughostServer, profile: Profile) -> dict[str, Any]:
    """Deploy -> `deployed` of the hash embedder needing one package the base set lacks:
    cold (a requirement set not seen before, so its environment is built; uv's download cache
    is warm after the first round), warm (a second plugin with the same set reuses it), and
    the plain plugin beside them, interleaved per round. Each round's set differs only by an
    always-true marker, so it gets an environment of its own."""
    plain_zip = zip_plugin(PLUGINS["hash16"])
    out: dict[str, Any] = {"dependency": ENV_DEPENDENCY, "cold": [], "warm": [], "plain": []}
    ids: list[str] = []
    for i in range(min(ENV_ROUNDS, profile.deploy_n)):
        dep = f"{ENV_DEPENDENCY} ; python_version >= '3.{i}'"
        with_dep = _with_dependency(plain_zip, dep)
        for kind, archive in (("cold", with_dep), ("warm", with_dep), ("plain", plain_zip)):
            pid = server.upload(f"bench_env_{kind}_{i}", archive)
            ids.append(pid)
            out[kind].append(server.deploy_and_wait(pid))
        log.info(
            "env deploy %d: cold %.3f s  warm %.3f s  plain %.3f s",
            i, out["cold"][-1], out["warm"][-1], out["plain"][-1],
        )
    undeploy_many(server, ids)
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def side_by_side(n: int, work: Path) -> dict[str, Any]:
    """Deploy and redeploy of hash16, pool on (A) and off (B), interleaved; medians."""
    servers = {
        "pool": PlughostServer(work / "pool"),
        "cold": PlughostServer(work / "cold", extra_env={"PLUGHOST_REPLICA_POOL": "0"}),
    }
    archive = zip_plugin(PLUGINS["hash16"])
    out: dict[str, Any] = {name: {"deploy": [], "redeploy": []} for name in servers}
    try:
        for server in servers.values():
            server.start()
        ids = {
            name: [server.upload(f"bench_pool_{i}", archive) for i in range(n)]
            for name, server in servers.items()
        }
        time.sleep(1.0)  # the pool fills
        for i in range(n):
            for name, server in servers.items():
                out[name]["deploy"].append(deploy_wait(server, ids[name][i]))
        for _ in range(n):
            for name, server in servers.items():
                out[name]["redeploy"].append(deploy_wait(server, ids[name][0]))
        for name, server in servers.items():
            route = server.client.post(
                server.route_url(ids[name][0]).removeprefix(server.url),
                json={"inputs": {"text": "hello"}, "parameters": {}},
            )
            out[name]["route_status"] = route.status_code
    finally:
        for server in servers.values():
            server.stop()
    for runs in out.values():
        runs["deploy_median_s"] = _median(runs["deploy"])
        runs["redeploy_median_s"] = _median(runs["redeploy"])
    out["ratio_deploy"] = out["pool"]["deploy_median_s"] / out["cold"]["deploy_median_s"]
    out["ratio_redeploy"] = out["pool"]["redeploy_median_s"] / out["cold"]["redeploy_median_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10, help="deploys (and redeploys) per server")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as work:
        result = side_by_side(args.n, Path(work))
    print(json.dumps(result, indent=1))
    for name in ("pool", "cold"):
        print(
            f"{name}: deploy median {result[name]['deploy_median_s'] * 1000:.1f} ms, "
            f"redeploy median {result[name]['redeploy_median_s'] * 1000:.1f} ms"
        )
    print(f"pool/cold: deploy {result['ratio_deploy']:.2f}, redeploy {result['ratio_redeploy']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
