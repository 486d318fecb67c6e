"""Batch bench, Ray leg: what the sandbox costs a batch job on the Ray backend.

    python -m bench.batch --ray-sandbox            # hash16, 20k rows, 3 rounds
    python -m bench.batch --ray-sandbox --rows 5000 --rounds 1

Two ``plughost serve`` on the Ray backend (each with its own local Ray of 2 CPUs), up at
the same time, the same plugin and input, jobs run in turn (A, B, A, B, ...) so both see the
same machine:
- ``sandboxed``: what plughost does: each Ray Data actor runs the pipeline in a sandboxed
  batch worker on its node;
- ``in-process``: PLUGHOST_UNSAFE_BATCH_RAY_IN_PROCESS=1, the same Ray Data path with the
  pipeline in the actors themselves (no sandbox, no worker process, no pipe), i.e. what
  Ray Data alone would cost.
Job time is started_at -> finished_at (package upload, actor and worker start, the rows,
the output merge). Jobs of a few seconds on a shared machine are noisy, so the same two ways
are also timed inside one process, without Ray (:func:`actor_costs`): the actor's start
(sandboxed: the node probe, cached, and the worker's start) and the time per chunk of 1,024
rows, rounds alternating. Writes bench/results/batch-ray-sandbox.md and .json.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from bench.plughost_sys import PlughostServer

RAY_ENV = {"PLUGHOST_BACKEND": "ray", "PLUGHOST_RAY_NUM_CPUS": "2"}
SYSTEMS = {
    "sandboxed": {},
    "in-process": {"PLUGHOST_UNSAFE_BATCH_RAY_IN_PROCESS": "1"},
}


def compare(
    work: Path, plugin: Path, data: Path, rows: int, rounds: int, run_job: Any, upload: Any
) -> dict[str, Any]:
    """Alternate jobs on the two servers; every run's rows and seconds per system."""
    servers: dict[str, PlughostServer] = {}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in SYSTEMS}
    try:
        for label, extra in SYSTEMS.items():
            servers[label] = PlughostServer(
                home=work / f"home-ray-{label}", extra_env={**RAY_ENV, **extra}
            ).start(timeout=180)
        ids = {label: upload(srv, "bench_ray_hash16", plugin) for label, srv in servers.items()}
        for rnd in range(rounds):
            order = list(SYSTEMS) if rnd % 2 == 0 else list(reversed(SYSTEMS))
            for label in order:
                result = run_job(servers[label], ids[label], data)
                runs[label].append(result)
                print("ray", label, rnd, json.dumps(result), flush=True)
    finally:
        for srv in servers.values():
            srv.stop(timeout=60)
    return {"rows": rows, "rounds": rounds, "runs": runs}


def actor_costs(plugin: Path, chunk_rows: int = 1024, chunks: int = 40, rounds: int = 3) -> dict:
    """Start seconds and milliseconds per chunk of one step actor, sandboxed and in process
    (medians over ``rounds``), the plugin folder given directly instead of fetched."""
    import shutil
    import tempfile
    import time

    import pandas as pd
    import pyarrow as pa

    from plughost.backends.ray.node import sandbox_fields
    from plughost.batch.protocol import ROW_ID
    from plughost.batch.ray_steps import SandboxedSteps
    from plughost.sandbox.policy import SandboxConfig

    folder = Path(tempfile.mkdtemp(prefix="plughost-actor-bench-")) / "plugin"
    shutil.copytree(plugin, folder)

    class Local(SandboxedSteps):
        def _fetch(self) -> tuple[Path, Path | None]:
            return folder, None

    frame = pd.DataFrame({"text": [f"row {i} " + "x" * 40 for i in range(chunk_rows)]})
    frame["mime_type"] = "text/plain"
    frame[ROW_ID] = range(chunk_rows)
    batch = pa.Table.from_pandas(frame, preserve_index=False)
    manifest = {"feature_extractor_name": "bench", "input_mappings": {"text": "text"}}
    found: dict[str, dict[str, list[float]]] = {
        label: {"start_s": [], "chunk_ms": []} for label in SYSTEMS
    }
    try:
        for _ in range(rounds):
            for label in SYSTEMS:
                config = {
                    "plugin_package": "",
                    "init": {"parameters": {}, "manifest": manifest, "dataset_size": chunk_rows},
                    "sandbox": sandbox_fields(SandboxConfig(mode="auto")),
                    "in_process": label == "in-process",
                }
                began = time.perf_counter()
                actor = Local(config)
                started = time.perf_counter()
                assert actor.fatal is None, actor.fatal
                for _ in range(chunks):
                    actor(batch)
                ended = time.perf_counter()
                actor._retire()
                found[label]["start_s"].append(started - began)
                found[label]["chunk_ms"].append((ended - started) / chunks * 1000)
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
    return {
        label: {key: statistics.median(values) for key, values in figures.items()}
        for label, figures in found.items()
    }


def _median_rate(runs: list[dict[str, Any]]) -> float | None:
    rates = [r["rows"] / r["seconds"] for r in runs if "error" not in r and r["seconds"] > 0]
    return statistics.median(rates) if rates else None


def report(result: dict[str, Any]) -> str:
    lines = [
        "# Batch bench, Ray backend: the sandbox's cost",
        "",
        (
            f"machine: {os.cpu_count()} cores; hash16, {result['rows']} rows, "
            f"{result['rounds']} rounds, jobs alternating between the two servers; rows/s "
            "from started_at to finished_at (median of the rounds)"
        ),
        "",
        "| system | rows/s (median) | each run (s) |",
        "|---|---|---|",
    ]
    rates = {label: _median_rate(runs) for label, runs in result["runs"].items()}
    for label, runs in result["runs"].items():
        each = ", ".join(
            f"{r['seconds']:.2f}" if "error" not in r else f"failed: {r['error']}" for r in runs
        )
        rate = rates[label]
        lines.append(f"| {label} | {rate:.0f} | {each} |" if rate else f"| {label} | - | {each} |")
    if rates.get("sandboxed") and rates.get("in-process"):
        ratio = rates["sandboxed"] / rates["in-process"]
        pairs = [
            b["seconds"] / a["seconds"]
            for a, b in zip(result["runs"]["sandboxed"], result["runs"]["in-process"], strict=True)
            if "error" not in a and "error" not in b
        ]
        lines += [
            "",
            f"sandboxed / in-process: {ratio:.2f} (medians); per round "
            + ", ".join(f"{p:.2f}" for p in pairs),
        ]
        result["ratio"] = ratio
    actor = result.get("actor")
    if actor:
        lines += [
            "",
            (
                "One step actor without Ray (same process, rounds alternating; hash16, "
                "chunks of 1,024 rows; medians):"
            ),
            "",
            "| system | actor start (s) | per chunk (ms) | rows/s of one actor |",
            "|---|---|---|---|",
        ]
        for label, figures in actor.items():
            rate = 1024 / (figures["chunk_ms"] / 1000)
            lines.append(
                f"| {label} | {figures['start_s']:.2f} | {figures['chunk_ms']:.1f} | {rate:.0f} |"
            )
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out: Path) -> str:
    text = report(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch-ray-sandbox.json").write_text(json.dumps(result, indent=1))
    (out / "batch-ray-sandbox.md").write_text(text)
    return text
