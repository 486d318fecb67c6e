"""The tables of bench/compare_revisions.py: medians per side, head/baseline, a verdict."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench.revisions import Side

CONCURRENCY = 32  # of every inference and status run
SAME = 0.02  # medians closer than this (relative) are within noise even when ranges don't meet


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    better: str  # "higher" or "lower"
    fmt: str


FIGURES = (
    Figure("infer_rps", "inference req/s, c=32", "higher", "{:,.0f}"),
    Figure("infer_p50_ms", "inference p50 ms, c=32", "lower", "{:.2f}"),
    Figure("infer_p99_ms", "inference p99 ms, c=32", "lower", "{:.2f}"),
    Figure("infer_cpu_us", "CPU µs per inference (server + replicas)", "lower", "{:,.0f}"),
    Figure("status_rps", "status GET req/s, c=32", "higher", "{:,.0f}"),
    Figure("status_p99_ms", "status GET p99 ms, c=32", "lower", "{:.2f}"),
    Figure("upload_s", "upload s", "lower", "{:.3f}"),
    Figure("deploy_s", "deploy -> `deployed` s", "lower", "{:.3f}"),
    Figure("upload_deploy_s", "upload + deploy s", "lower", "{:.3f}"),
    Figure("server_rss_mib", "server RSS MiB after the load", "lower", "{:.1f}"),
    Figure("replica_rss_mib", "largest replica RSS MiB", "lower", "{:.1f}"),
    Figure("failed", "failed requests per round", "lower", "{:.0f}"),
)


def values(rows: list[dict[str, Any]], side: str, key: str) -> list[float]:
    out: list[float] = []
    for row in rows:
        if row["side"] != side:
            continue
        value = row[key]
        out.extend(v for v in (value if isinstance(value, list) else [value]) if v is not None)
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """figure -> medians and ranges per side, head/baseline ratio and a verdict."""
    out: dict[str, dict[str, Any]] = {}
    for fig in FIGURES:
        cell: dict[str, Any] = {"better": fig.better}
        for side in ("baseline", "head"):
            vals = values(rows, side, fig.key)
            cell[side] = {
                "median": statistics.median(vals) if vals else None,
                "min": min(vals, default=None),
                "max": max(vals, default=None),
                "n": len(vals),
            }
        base, head = cell["baseline"]["median"], cell["head"]["median"]
        cell["ratio"] = head / base if base and head is not None else None
        cell["verdict"] = _verdict(cell, fig.better)
        out[fig.key] = cell
    return out


def _verdict(cell: dict[str, Any], better: str) -> str:
    """'within noise' when the two sides' ranges over the rounds overlap, or the medians
    differ by less than SAME (memory figures barely move from round to round)."""
    base, head = cell["baseline"], cell["head"]
    if base["median"] is None or head["median"] is None:
        return "-"
    overlap = head["min"] <= base["max"] and base["min"] <= head["max"]
    if overlap or (cell["ratio"] is not None and abs(cell["ratio"] - 1) < SAME):
        return "within noise"
    head_higher = head["median"] > base["median"]
    return "head better" if head_higher == (better == "higher") else "head worse"


def render(meta: dict[str, Any], sides: list[Side], summary: dict[str, Any]) -> str:
    base, head = sides
    lines = [f"# plughost {head.label} vs {base.label}", "", _setting(meta), ""]
    lines += ["| side | commit | interpreter | replica process |", "|---|---|---|---|"]
    for side in sides:
        lines.append(f"| {side.label} | {side.commit} | `{side.python}` | `{side.replica_argv}` |")
    lines += [
        "",
        f"| figure | better | {base.label} | {head.label} | head / baseline | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for fig in FIGURES:
        cell = summary[fig.key]
        ratio = f"{cell['ratio']:.3f}" if cell["ratio"] is not None else "-"
        lines.append(
            f"| {fig.label} | {fig.better} | {_cell(cell['baseline'], fig.fmt)} | "
            f"{_cell(cell['head'], fig.fmt)} | {ratio} | {cell['verdict']} |"
        )
    lines += ["", NOTE]
    if meta["plan"] == "quick":
        lines += ["", "**quick plan: a smoke setting, not a measurement.**"]
    return "\n".join(lines) + "\n"


NOTE = (
    "Cells: median (min-max) over the rounds; deploy figures over every deploy. "
    '"within noise": the two ranges overlap. A ratio above 1 is better for a "higher" '
    'figure, below 1 for a "lower" one.'
)


def _setting(meta: dict[str, Any]) -> str:
    return (
        f"{meta['started']}, {meta['plan']} plan: {meta['rounds']} interleaved rounds "
        f"(baseline then head), inference {meta['load_s']:g} s and status "
        f"{meta['status_s']:g} s per run at c={CONCURRENCY}, {meta['deploys']} deploy(s) per "
        f"side and round; load by {meta['loadgen']}; {meta['machine']['cores']} cores, "
        f"load average {meta['loadavg_start'][0]:.2f} at the start, "
        f"{meta['loadavg_end'][0]:.2f} at the end; {meta['total_s']:.0f} s in all."
    )


def _cell(stats: dict[str, Any], fmt: str) -> str:
    if stats["median"] is None:
        return "-"
    return f"{fmt.format(stats['median'])} ({fmt.format(stats['min'])}-{fmt.format(stats['max'])})"
