"""The goals of issue 15 (plughost on Ray as fast as Ray Serve tuned), as GoalRow data.

They read the same result shape from ``make bench`` (latest.json) and from
``bench.ray_compare`` (the Ray systems alone): plughost-ray against ray-serve-tuned in the
same run, at every load point both measured.
"""

from __future__ import annotations

import statistics
from typing import Any

RAY = "plughost-ray"
TUNED = "ray-serve-tuned"


def _pairs(res: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for plugin, points in res.get("summary", {}).items():
        for point, systems in points.items():
            if point.startswith("c=") and RAY in systems and TUNED in systems:
                out.append((f"{plugin} {point}", systems[RAY], systems[TUNED]))
    return out


def ray_rps(res: dict[str, Any]) -> tuple[str, bool | None]:
    pairs = _pairs(res)
    if not pairs:
        return "not measured (both Ray systems needed)", None
    parts, met = [], True
    for name, ph, ray in pairs:
        ratio = ph["rps"] / ray["rps"] if ray["rps"] else 0.0
        p50_ok = ph["p50_us"] <= ray["p50_us"]
        met = met and ratio >= 1.0 and p50_ok
        parts.append(
            f"{name} {ratio:.2f}x (p50 {ph['p50_us'] / 1000:.2f} vs {ray['p50_us'] / 1000:.2f} ms)"
        )
    return "; ".join(parts), met


def ray_cpu(res: dict[str, Any]) -> tuple[str, bool | None]:
    pairs = [
        (n, a, b) for n, a, b in _pairs(res) if a.get("cpu_us_per_req") and b.get("cpu_us_per_req")
    ]
    if not pairs:
        return "not measured", None
    parts = [f"{n} {a['cpu_us_per_req']:,.0f} vs {b['cpu_us_per_req']:,.0f}" for n, a, b in pairs]
    return "; ".join(parts), all(a["cpu_us_per_req"] <= b["cpu_us_per_req"] for _, a, b in pairs)


def ray_idle(res: dict[str, Any]) -> tuple[str, bool | None]:
    idle = res.get("idle_cpu", {})
    ph, ray = idle.get(RAY), idle.get(TUNED)
    if ph is None or ray is None:
        return "not measured", None
    return f"{ph:.3f} vs {ray:.3f} cores", ph <= ray


def _median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def ray_deploy(res: dict[str, Any]) -> tuple[str, bool | None]:
    dep = res.get("deploy", {})
    ph, ray = _median(dep.get("plughost_ray")), _median(dep.get("ray_serve_run"))
    if ph is None or ray is None:
        return "not measured", None
    return f"{ph:.3f} s vs serve.run {ray:.3f} s ({ray / ph:.2f}x)", ph <= ray


def ray_redeploy(res: dict[str, Any]) -> tuple[str, bool | None]:
    dep = res.get("deploy", {})
    ph = _median(res.get("redeploy_ray") or dep.get("plughost_ray_redeploy"))
    ray = _median(dep.get("ray_serve_run"))
    if ph is None or ray is None:
        return "not measured", None
    return f"{ph:.3f} s vs serve.run {ray:.3f} s", ph <= ray


def ray_first_deploy(res: dict[str, Any]) -> tuple[str, bool | None]:
    """The first deploy in a fresh cluster (``bench.ray_first``): both sides started fresh,
    Ray's own start apart; medians of the interleaved rounds."""
    first = res.get("ray_first", {})
    if first.get("skipped"):
        return f"not measured ({first['skipped']})", None
    ph, ray = first.get("plughost_ray_median_s"), first.get("serve_run_median_s")
    if ph is None or ray is None:
        return f"not measured ({'; '.join(first.get('errors') or []) or 'no run'})", None
    starts = [r["start_s"] for r in first.get("serve_run", [])]
    ph_starts = [r["start_s"] for r in first.get("plughost_ray", [])]
    text = (
        f"{ph:.3f} s vs serve.run {ray:.3f} s ({ray / ph:.2f}x, N={len(first['plughost_ray'])}"
        f"/{len(first['serve_run'])}); not counted: ray.init + serve.start "
        f"{statistics.median(starts):.2f} s, plughost serve + its Ray "
        f"{statistics.median(ph_starts):.2f} s"
    )
    ph_next, ray_next = (
        first.get("plughost_ray_next_median_s"),
        first.get("serve_run_next_median_s"),
    )
    if ph_next is not None and ray_next is not None:
        text += f"; the next deploy there: redeploy {ph_next:.3f} s vs serve.run {ray_next:.3f} s"
    return text, ph <= ray


def ray_bluegreen(res: dict[str, Any]) -> tuple[str, bool | None]:
    bg = res.get("bluegreen_ray", {})
    if "failed" not in bg:
        return "not measured", None
    return f"{bg['failed']} failed of {bg['requests']} ({bg.get('rps', 0):,.0f} req/s)", (
        bg["failed"] == 0
    )


ROWS = (
    ("plughost-ray >= Ray Serve tuned req/s, p50 no worse", ray_rps),
    ("CPU per request <= Ray Serve tuned", ray_cpu),
    ("idle CPU <= Ray Serve tuned", ray_idle),
    ("deploy <= serve.run", ray_deploy),
    ("redeploy <= serve.run", ray_redeploy),
    ("first deploy in a fresh cluster <= serve.run", ray_first_deploy),
    ("0 failed during blue-green redeploys under load", ray_bluegreen),
)

CAUSE = {
    "ray_rps": "compare the request tables: plughost-ray calls each worker over its Unix socket "
    "(same node) or the authenticated TCP relay; a gap at low concurrency is the sandboxed "
    "worker's extra process hop, at high concurrency the server's event loop.",
    "ray_deploy": "deploy on Ray = Serve starting a replica actor (a new Ray worker process "
    "importing Serve's replica code, the same start serve.run waits for) + the sandboxed "
    "worker's start inside it + Serve's RUNNING (its control loop, 0.1 s ticks); the server "
    "log's `up in` line splits a start into these steps.",
    "ray_first_deploy": "as ray_deploy, in a cluster that has run nothing yet: the sandbox "
    "probe is run on the server's node when it connects to Ray, ahead of the first replica; "
    "see the `up in` line of the server log.",
}
