"""Batch bench: rows/s of a plugin's pipeline, plughost vs Ray Data vs a plain pandas loop.

    python -m bench.batch                      # hash16 and minilm, 20k / 2k rows, 1 GB input
    python -m bench.batch --rows 5000 --steady-rows 50000 --big-mb 200 --no-minilm
    python -m bench.batch --ray-sandbox        # only the Ray leg: sandboxed vs in-process

Systems, all on the same steps (the example's pipeline.py) and the same rows:
- ``pandas``: one process, prepare on plughost's Dataset stand-in, then the steps over
  batches of compute_profile.batch_size in a plain loop (the floor: no IPC, no Parquet).
  ``seconds`` times the loop alone, as always; the same run also times what a whole job in
  pandas adds around it (``read_s``: ``read_json`` of the input, ``write_s``: the outputs
  concatenated and written as Parquet), reported beside it, never in the ratio;
- ``plughost``: ``plughost serve`` (local backend, sandboxed workers), a JSONL upload, timed
  from the job's started_at to finished_at (worker start and model load included);
- ``ray-data``: a private Ray, ``ray.data.from_pandas`` -> prepare -> ``map_batches`` with an
  actor pool of the same size as plughost's workers, materialised.

hash16 runs at two sizes, ``--rows`` (20k, the figure of earlier runs) and ``--steady-rows``
(200k), the floor and plughost alternating (floor, plughost, floor, plughost; ``--rounds``
rounds, medians). At 20k rows the floor's loop takes ~0.16 s, less than a batch worker's
start (an interpreter importing pandas and pyarrow in its sandbox), so that ratio mostly
measures start-up. The steady-state figure compares the marginal rates, (N2 - N1) / (t2 -
t1) on each side: fixed costs cancel on both, and plughost's fixed cost is reported on its
own (t1 - N1 / marginal rate). The first job of the fresh server (it imports the data
libraries, which an idle server does not hold) runs before the rounds and is reported apart.
Peak memory: a ~1 GB JSONL input through plughost (RSS of the server plus all its batch
workers, sampled every 0.1 s) next to the pandas floor reading the same file at once.
Writes bench/results/batch-latest.md and .json. A benchmark is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

from bench.plughost_sys import EXAMPLES, PlughostServer, zip_plugin
from bench.procstat import rss_kb, tree

RESULTS = Path(__file__).resolve().parent / "results"
PLUGINS = {"hash16": EXAMPLES / "hash_embedder", "minilm": EXAMPLES / "minilm_embedder"}

FLOOR = r"""
import importlib.util, json, resource, sys, tempfile, time
from pathlib import Path
import pandas as pd
from plughost.runtime_api import RUNTIME_API_DIR
from plughost.runtime_api.extractor_request import build_extractor_request
from plughost.batch.dataset import LocalDataset
plugin, path, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
write = sys.argv[4] == "write"
sys.path[:0] = [plugin, str(RUNTIME_API_DIR)]
spec = importlib.util.spec_from_file_location("floor_pipeline", Path(plugin) / "pipeline.py")
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
built = module.build_steps(build_extractor_request({}, {"text": "text"}))
read_begin = time.perf_counter()
frame = pd.read_json(path, lines=True)
begin = time.perf_counter()
if built.get("prepare"):
    frame = built["prepare"](LocalDataset.from_pandas(frame)).to_pandas()
frame = frame.reset_index(drop=True)
outputs = []
for start in range(0, len(frame), batch_size):
    batch = frame.iloc[start:start + batch_size].reset_index(drop=True)
    for step in built["steps"]:
        batch = step(batch)
    if write:
        outputs.append(batch)
elapsed = time.perf_counter() - begin
written = time.perf_counter()
if write:
    with tempfile.TemporaryDirectory() as folder:
        pd.concat(outputs, ignore_index=True).to_parquet(Path(folder) / "out.parquet", index=False)
write_s = time.perf_counter() - written
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": len(frame), "seconds": elapsed, "read_s": begin - read_begin,
                  "write_s": write_s if write else None, "peak_rss_mb": peak / 1024}))
"""

RAY_DATA = r"""
import importlib.util, json, sys, time
from pathlib import Path
import pandas as pd, ray
plugin, path, batch_size, actors = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from plughost.runtime_api import RUNTIME_API_DIR
sys.path[:0] = [plugin, str(RUNTIME_API_DIR)]
ray.init(address="local", num_cpus=2, include_dashboard=False,
         log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": plugin + ":" + str(RUNTIME_API_DIR), "OMP_NUM_THREADS": "1"}})
ray.data.DataContext.get_current().enable_progress_bars = False
from plughost.runtime_api.extractor_request import build_extractor_request


def load():
    spec = importlib.util.spec_from_file_location("ray_pipeline", Path(plugin) / "pipeline.py")
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    return module.build_steps(build_extractor_request({}, {"text": "text"}))


class Steps:
    def __init__(self):
        self.steps = load()["steps"]

    def __call__(self, batch):
        batch = batch.reset_index(drop=True)
        for step in self.steps:
            batch = step(batch)
        return batch


frame = pd.read_json(path, lines=True)
begin = time.perf_counter()
ds = ray.data.from_pandas(frame)
prepare = load().get("prepare")
if prepare:
    ds = prepare(ds)
out = ds.map_batches(Steps, batch_size=batch_size, batch_format="pandas", concurrency=actors,
                     num_cpus=0.5).materialize()
rows = out.count()
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - begin}))
"""


def write_jsonl(path: Path, rows: int, text_bytes: int = 60) -> Path:
    filler = "x" * max(0, text_bytes - 20)
    with path.open("w") as out:
        for i in range(rows):
            out.write(json.dumps({"text": f"row {i} {filler}", "id": i}) + "\n")
    return path


def write_big_jsonl(path: Path, megabytes: int) -> tuple[Path, int]:
    """About ``megabytes`` of JSONL made of 10 KB texts; the path and its row count."""
    chunk = "lorem ipsum dolor sit amet " * 380  # ~10 KB
    rows = 0
    with path.open("w") as out:
        while out.tell() < megabytes * 1024 * 1024:
            out.write(json.dumps({"text": f"{rows} {chunk}", "id": rows}) + "\n")
            rows += 1
    return path, rows


def run_floor(plugin: Path, data: Path, batch_size: int, write: bool = True) -> dict[str, Any]:
    """The pandas loop's figures; ``write``: also time writing its output as Parquet (off for
    the memory leg: it would hold the outputs of the whole file)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FLOOR,
            str(plugin),
            str(data),
            str(batch_size),
            "write" if write else "no-write",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_ray_data(plugin: Path, data: Path, batch_size: int, actors: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", RAY_DATA, str(plugin), str(data), str(batch_size), str(actors)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


class PeakSampler:
    """Peak summed RSS of a process tree, sampled in a thread."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_kb = 0
        self.peak_server_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            pids = tree([self.root])
            self.peak_kb = max(self.peak_kb, sum(rss_kb(p) for p in pids))
            self.peak_server_kb = max(self.peak_server_kb, rss_kb(self.root))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_plughost(server: PlughostServer, plugin_id: str, data: Path) -> dict[str, Any]:
    client = server.client
    with data.open("rb") as src:
        r = client.post(
            f"/v1/namespaces/ns_default/plugins/{plugin_id}/batches",
            files={"file": (data.name, src, "application/octet-stream")},
        )
    r.raise_for_status()
    endpoint = r.json()["status_endpoint"]
    with PeakSampler(server.pid) as sampler:
        while (body := client.get(endpoint).json())["status"] not in (
            "completed",
            "failed",
            "cancelled",
        ):
            time.sleep(0.2)
    if body["status"] != "completed":
        return {"error": body.get("message")}
    from datetime import datetime

    began = datetime.fromisoformat(body["started_at"])
    ended = datetime.fromisoformat(body["finished_at"])
    return {
        "rows": body["rows_done"],
        "seconds": (ended - began).total_seconds(),
        "peak_rss_mb": sampler.peak_kb / 1024,
        "peak_server_rss_mb": sampler.peak_server_kb / 1024,
    }


def upload(server: PlughostServer, name: str, folder: Path) -> str:
    r = server.client.post(
        "/v1/namespaces/ns_default/plugins",
        files={"file": ("p.zip", zip_plugin(folder), "application/zip")},
        data={"name": name, "version": "1.0.0"},
    )
    r.raise_for_status()
    return str(r.json()["plugin_id"])


def _rate(result: dict[str, Any]) -> str:
    if "error" in result:
        return "skipped" if result["error"] == "skipped" else f"failed: {result['error']}"
    return f"{result['rows'] / result['seconds']:.0f}"


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median seconds (the lower middle one of an even count); an error when none
    completed."""
    done = sorted((r for r in runs if "error" not in r), key=lambda r: r["seconds"])
    return done[(len(done) - 1) // 2] if done else runs[-1]


def measure(
    server: PlughostServer,
    name: str,
    plugin_id: str,
    datas: dict[int, Path],
    rounds: int,
) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """Every size, floor then plughost, ``rounds`` times (A B A B: both see the same load)."""
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {
        n: {"pandas": [], "plughost": []} for n in datas
    }
    for rnd in range(rounds):
        for n, data in datas.items():
            runs[n]["pandas"].append(run_floor(PLUGINS[name], data, 64))
            runs[n]["plughost"].append(run_plughost(server, plugin_id, data))
            print(name, n, rnd, json.dumps({k: v[-1] for k, v in runs[n].items()}), flush=True)
    return runs


def steady_state(runs: dict[int, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Marginal rows/s between the two sizes on each side (medians of seconds), their ratio,
    each round's ratio, and plughost's fixed cost."""
    small, large = sorted(runs)
    added = large - small
    out: dict[str, Any] = {"rows": [small, large]}
    for system in ("pandas", "plughost"):
        t_small = _median_run(runs[small][system]).get("seconds")
        t_large = _median_run(runs[large][system]).get("seconds")
        rate = added / (t_large - t_small) if t_small and t_large and t_large > t_small else None
        out[system] = {
            "rows_per_s": rate,
            "fixed_s": t_small - small / rate if rate and t_small else None,
        }
    floor, ours = out["pandas"]["rows_per_s"], out["plughost"]["rows_per_s"]
    out["ratio"] = ours / floor if floor and ours else None
    rounds = []
    for rnd in range(len(runs[small]["pandas"])):
        pair = [runs[n][s][rnd] for n in (small, large) for s in ("pandas", "plughost")]
        if any("error" in r for r in pair):
            continue
        floor_d, ours_d = (
            pair[2]["seconds"] - pair[0]["seconds"],
            pair[3]["seconds"] - pair[1]["seconds"],
        )
        rounds.append(floor_d / ours_d if ours_d > 0 and floor_d > 0 else None)
    out["round_ratios"] = rounds
    return out


def _job_rate(floor: dict[str, Any]) -> str:
    """The floor as a whole pandas job: read_json + the loop + writing Parquet."""
    if "error" in floor or floor.get("write_s") is None:
        return ""
    return f"{floor['rows'] / (floor['read_s'] + floor['seconds'] + floor['write_s']):.0f}"


def _ratio(ours: dict[str, Any], floor: dict[str, Any]) -> str:
    if "error" in floor or "error" in ours:
        return ""
    return f"{(ours['rows'] / ours['seconds']) / (floor['rows'] / floor['seconds']):.2f}"


def _throughput_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        (
            "End to end: plughost from the job's started_at to finished_at (worker start, plugin"
            " load, reading, the steps, Parquet output); the floor's loop alone (its read and"
            " write are the next column). Medians of the rounds."
        ),
        "",
        (
            "| plugin | rows | pandas loop (floor) rows/s | pandas read+loop+write rows/s |"
            " plughost local rows/s | Ray Data rows/s | plughost / floor |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for plugin, res in results["throughput"].items():
        sizes = res.get("sizes") or {str(res["rows"]): res}
        for rows, at in sizes.items():
            floor, ours = at["pandas"], at["plughost"]
            ray = at.get("ray-data", {"error": "skipped"})
            lines.append(
                f"| {plugin} | {rows} | {_rate(floor)} | {_job_rate(floor)} | {_rate(ours)} |"
                f" {_rate(ray)} | {_ratio(ours, floor)} |"
            )
    steady = {p: r["steady"] for p, r in results["throughput"].items() if r.get("steady")}
    if steady:
        lines += [
            "",
            (
                "Steady state: marginal rows/s between the two sizes, (N2 - N1) / (t2 - t1), on"
                " each side (fixed costs cancel); plughost's fixed cost = t1 - N1 / rate."
            ),
            "",
            (
                "| plugin | rows | pandas loop marginal rows/s | plughost marginal rows/s |"
                " plughost / floor (goal >= 0.8) | per round | plughost fixed cost |"
            ),
            "|---|---|---|---|---|---|---|",
        ]
        for plugin, st in steady.items():
            floor, ours = st["pandas"], st["plughost"]
            rounds = ", ".join(f"{r:.2f}" if r else "-" for r in st["round_ratios"])
            lines.append(
                f"| {plugin} | {st['rows'][0]} -> {st['rows'][1]} | {_num(floor['rows_per_s'])} |"
                f" {_num(ours['rows_per_s'])} | {_num(st['ratio'], '.2f')} | {rounds} |"
                f" {_num(ours['fixed_s'], '.2f')} s |"
            )
    firsts = {p: r["first_job"] for p, r in results["throughput"].items() if r.get("first_job")}
    for plugin, first in firsts.items():
        lines += [
            "",
            (
                f"First job of the fresh server ({plugin}, {first.get('rows')} rows, not in"
                f" the rounds): {_rate(first)} rows/s, {first.get('seconds', 0):.2f} s."
            ),
        ]
    return lines


def _num(value: float | None, fmt: str = ".0f") -> str:
    return "-" if value is None else format(value, fmt)


def report(results: dict[str, Any]) -> str:
    lines = ["# Batch bench", "", f"machine: {os.cpu_count()} cores; {results['note']}", ""]
    lines += _throughput_lines(results)
    mem = results.get("memory")
    if mem:
        lines += [
            "",
            f"## Peak memory, {mem['input_mb']:.0f} MB JSONL ({mem['rows']} rows, hash16)",
            "",
        ]
        lines += ["| system | peak RSS |", "|---|---|"]
        lines.append(f"| plughost server alone | {mem['plughost']['peak_server_rss_mb']:.0f} MB |")
        lines.append(f"| plughost server + workers | {mem['plughost']['peak_rss_mb']:.0f} MB |")
        lines.append(
            f"| pandas floor (whole file in memory) | {mem['pandas']['peak_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.batch")
    parser.add_argument("--rows", type=int, default=20000, help="rows for hash16")
    parser.add_argument(
        "--steady-rows",
        type=int,
        default=200000,
        help="hash16's second size, for the steady-state (marginal) rate; 0 = skip",
    )
    parser.add_argument("--minilm-rows", type=int, default=2000)
    parser.add_argument(
        "--big-mb", type=int, default=1024, help="size of the memory input; 0 = skip"
    )
    parser.add_argument("--no-minilm", action="store_true")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--ray-sandbox",
        action="store_true",
        help="only the Ray backend's sandbox cost (bench.batch_ray), hash16 with --rows",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of hash16 (and of --ray-sandbox)"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="plughost-batch-bench-"))
    if args.ray_sandbox:
        return _ray_sandbox(work, args)
    server = PlughostServer(home=work / "home").start()
    results: dict[str, Any] = {"throughput": {}, "note": ""}
    try:
        plugins = (
            {"hash16": args.rows}
            if args.no_minilm
            else {"hash16": args.rows, "minilm": args.minilm_rows}
        )
        for name, rows in plugins.items():
            sizes = [rows]
            if name == "hash16" and args.steady_rows > rows:
                sizes.append(args.steady_rows)
            datas = {n: write_jsonl(work / f"{name}-{n}.jsonl", n) for n in sizes}
            plugin_id = upload(server, f"bench_batch_{name}", PLUGINS[name])
            res: dict[str, Any] = {"rows": rows}
            if name == "hash16":  # the server's first job, apart from the rounds
                res["first_job"] = run_plughost(server, plugin_id, datas[rows])
            runs = measure(server, name, plugin_id, datas, args.rounds if name == "hash16" else 1)
            res["runs"] = {str(n): r for n, r in runs.items()}
            res["sizes"] = {
                str(n): {s: _median_run(r[s]) for s in ("pandas", "plughost")}
                for n, r in runs.items()
            }
            res.update(res["sizes"][str(rows)])
            if len(sizes) > 1:
                res["steady"] = steady_state(runs)
            if not args.no_ray:
                res["ray-data"] = run_ray_data(PLUGINS[name], datas[rows], 64, 2)
                res["sizes"][str(rows)]["ray-data"] = res["ray-data"]
            results["throughput"][name] = res
            print(name, json.dumps({k: v for k, v in res.items() if k != "runs"}), flush=True)
        if args.big_mb:
            big, rows = write_big_jsonl(work / "big.jsonl", args.big_mb)
            plugin_id = upload(server, "bench_batch_big", PLUGINS["hash16"])
            results["memory"] = {
                "input_mb": big.stat().st_size / 1024**2,
                "rows": rows,
                "plughost": run_plughost(server, plugin_id, big),
                "pandas": run_floor(PLUGINS["hash16"], big, 64, write=False),
            }
            print("memory", json.dumps(results["memory"]), flush=True)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)  # the inputs are large
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch-latest.json").write_text(json.dumps(results, indent=1))
    (args.out / "batch-latest.md").write_text(report(results))
    print(report(results))
    return 0


def _ray_sandbox(work: Path, args: argparse.Namespace) -> int:
    from bench import batch_ray

    try:
        data = write_jsonl(work / "hash16.jsonl", args.rows)
        result = batch_ray.compare(
            work, PLUGINS["hash16"], data, args.rows, args.rounds, run_plughost, upload
        )
        result["actor"] = batch_ray.actor_costs(PLUGINS["hash16"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(batch_ray.write(result, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
