"""Server-side micro-batching (issue 26): calls/s at concurrency 16, batched against
unbatched, side by side in one run.

One `plughost serve` (local backend) of its own, four deployments, each one replica:

- ``sleep_b`` / ``sleep_u``: the same plugin, whose ``run_inference`` sleeps 20 ms and whose
  ``run_inference_batch`` sleeps 20 ms per batch whatever its size; deployed with
  ``max_batch_size: 16, batch_wait_timeout_s: 0.01`` (``sleep_b``) and without
  (``sleep_u``: the default 1, one call at a time in the replica's plugin thread);
- ``minilm_b`` / ``minilm_u``: the MiniLM example (examples/plugins/minilm_embedder) with a
  ``run_inference_batch`` that encodes every text of the batch in one ``encode(list)`` call;
  the same code deployed with and without ``max_batch_size: 16`` (without, one text per
  call). Skipped with a note when MiniLM is not installed (``minilm_available``).

Closed-loop load at c=16 (wrk when installed, else bench.loadgen) runs against each for the
same duration, the legs of a round one after the other (A B, A B: each pair side by side),
``rounds`` times, after an uncounted warm-up leg each. Reported: calls/s, p50/p99 and failed
calls of the median round of each leg (the lower one of an even count), the ratio
batched / unbatched of those medians and of each round, and the mean batch size the status
endpoint reports for the batched deployments. A ratio, never a timing assertion.

Run by hand: ``python -m bench.batching [--profile full|tiny] [--seconds S] [--rounds N]
[--no-minilm]``; writes bench/results/batching.json. ``bench.run`` calls :func:`run`.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from bench.load import LoadSpec, run_load, wrk_path
from bench.plughost_sys import EXAMPLES, PlughostServer
from bench.settings import PROFILES
from bench.systems import minilm_available

log = logging.getLogger("bench")

RESULTS = Path(__file__).resolve().parent / "results" / "batching.json"
CONCURRENCY = 16
BATCH = {"max_batch_size": 16, "batch_wait_timeout_s": 0.01}
MINILM_FOLDER = EXAMPLES / "minilm_embedder"
# the MiniLM example's own resources (its manifest), kept on both deployments
MINILM_RESOURCES = {"num_cpus": 1, "memory_gb": 2}

PIPELINE = "def build_steps(extractor_request=None, **kw):\n    return {'steps': []}\n"

SLEEP = """
import time

BATCH_S = 0.02  # one call, or one whole batch


class Service:
    def run_inference(self, inputs, parameters):
        time.sleep(BATCH_S)
        return {"ok": True}

    def run_inference_batch(self, inputs, parameters):
        time.sleep(BATCH_S)
        return [{"ok": True} for _ in inputs]


def get_inference_service(**kwargs):
    return Service()
"""

# Appended to the MiniLM example's realtime.py: the same service plus a batch handler.
MINILM_BATCH = '''


class BatchedMiniLMService(MiniLMService):
    """The example's service; a batch is encoded in one ``encode(list)`` call (one per
    ``normalize`` value present in the batch)."""

    def run_inference_batch(self, inputs, parameters):
        texts = []
        for item in inputs:
            text = item.get("text")
            if not isinstance(text, str):
                raise TypeError("inputs.text must be a string")
            texts.append(text)
        flags = [bool((p or {}).get("normalize", True)) for p in parameters]
        out = [None] * len(texts)
        for flag in set(flags):
            where = [i for i, f in enumerate(flags) if f == flag]
            vectors = self._encoder.encode([texts[i] for i in where], normalize=flag)
            for i, vector in zip(where, vectors):
                out[i] = {"embedding": vector}
        return out


def get_inference_service(**kwargs):
    return BatchedMiniLMService(**kwargs)
'''


def sleep_zip(name: str, serve_config: dict[str, Any]) -> bytes:
    cfg = {"num_replicas": 1, **serve_config}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "manifest.py",
            f'feature_extractor_name = "{name}"\nversion = "1.0.0"\n'
            f"features = []\nserve_config = {cfg!r}\n",
        )
        zf.writestr("pipeline.py", PIPELINE)
        zf.writestr("realtime.py", SLEEP)
    return buf.getvalue()


def minilm_zip(serve_config: dict[str, Any], folder: Path = MINILM_FOLDER) -> bytes:
    """The MiniLM example with :data:`MINILM_BATCH` appended to its realtime.py and
    ``serve_config`` appended to its manifest (it wins over the manifest's own), as
    bench.elastic packs it."""
    cfg = {"num_replicas": 1, **MINILM_RESOURCES, **serve_config}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                text = p.read_bytes()
                rel = p.relative_to(folder).as_posix()
                if rel == "manifest.py":
                    text += f"\nserve_config = {cfg!r}\n".encode()
                elif rel == "realtime.py":
                    text += MINILM_BATCH.encode()
                zf.writestr(rel, text)
    return buf.getvalue()


# (key, plugin, batched?) of every leg, in the order a round runs them
LEGS = (
    ("sleep_b", "sleep", True),
    ("sleep_u", "sleep", False),
    ("minilm_b", "minilm", True),
    ("minilm_u", "minilm", False),
)


def _archive(plugin: str, name: str, batched: bool) -> bytes:
    cfg = dict(BATCH) if batched else {}
    return sleep_zip(name, cfg) if plugin == "sleep" else minilm_zip(cfg)


def _leg(server: PlughostServer, pid: str, seconds: float, prefer_wrk: bool) -> dict[str, Any]:
    spec = LoadSpec(
        urls=[server.route_url(pid)],
        headers=[server.auth_header],
        concurrency=CONCURRENCY,
        duration=seconds,
    )
    got = run_load(spec, prefer_wrk)
    out = {k: got[k] for k in ("rps", "p50_us", "p99_us", "ok", "failed", "tool")}
    if got.get("error_samples"):
        out["error_samples"] = got["error_samples"][:2]
    return out


def run(
    work: Path,
    seconds: float = 5.0,
    rounds: int = 3,
    minilm: bool = True,
    prefer_wrk: bool = True,
    warmup_s: float = 1.0,
) -> dict[str, Any]:
    """The comparison as ``{"batching": {...}}`` (merged into bench.run's results)."""
    work.mkdir(parents=True, exist_ok=True)
    why_not = "disabled (minilm=False)" if not minilm else minilm_available()
    legs = [leg for leg in LEGS if leg[1] == "sleep" or not why_not]
    server = PlughostServer(home=work / "home").start()
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in legs}
    ids: dict[str, str] = {}
    batching: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        for key, plugin, batched in legs:
            ids[key] = server.upload(f"bench_batch_{key}", _archive(plugin, key, batched))
            server.deploy(ids[key])
        for pid in ids.values():
            server.wait_deployed(pid, timeout=300)
        deploy_s = time.perf_counter() - t0
        for pid in ids.values():  # not counted: first calls, batches of every size
            _leg(server, pid, warmup_s, prefer_wrk)
        for _ in range(rounds):
            for key, pid in ids.items():
                runs[key].append(_leg(server, pid, seconds, prefer_wrk))
                log.info(
                    "batching %s: %.0f calls/s, p50 %.1f ms",
                    key,
                    runs[key][-1]["rps"],
                    runs[key][-1]["p50_us"] / 1000,
                )
        for key, _, batched in legs:
            if batched:
                batching[key] = server.status(ids[key]).get("batching")
    finally:
        server.stop(timeout=60)
    table: dict[str, Any] = {}
    for key, got in runs.items():
        median = sorted(got, key=lambda r: r["rps"])[(len(got) - 1) // 2]  # lower median
        table[key] = {**median, "rps_all": [round(r["rps"], 1) for r in got]}
        if key in batching:
            table[key]["batching"] = batching[key]
    for plugin in ("sleep", "minilm"):
        if f"{plugin}_b" not in table:
            continue
        b, u = table[f"{plugin}_b"], table[f"{plugin}_u"]
        table[f"{plugin}_ratio"] = round(b["rps"] / u["rps"], 2) if u["rps"] else None
        table[f"{plugin}_ratio_rounds"] = [
            round(x["rps"] / y["rps"], 2) if y["rps"] else None
            for x, y in zip(runs[f"{plugin}_b"], runs[f"{plugin}_u"], strict=True)
        ]
    if why_not:
        table["minilm_skipped"] = why_not
    table["deploy_s"] = round(deploy_s, 2)
    table["setup"] = (
        f"local backend, one replica each, closed loop c={CONCURRENCY}, {seconds:g} s x "
        f"{rounds} round(s), legs alternating batched and unbatched, median round; batched: "
        f"max_batch_size {BATCH['max_batch_size']}, batch_wait_timeout_s "
        f"{BATCH['batch_wait_timeout_s']}"
    )
    return {"batching": table}


def judge(res: dict[str, Any]) -> tuple[str, bool | None]:
    """The GOALS row (bench.report): reported figures, not a goal."""
    table = res.get("batching") or {}
    if "sleep_ratio" not in table:
        return "not measured (python -m bench.batching)", None
    parts = []
    for plugin, label in (("sleep", "20 ms/batch plugin"), ("minilm", "MiniLM")):
        if f"{plugin}_ratio" not in table:
            continue
        b, u = table[f"{plugin}_b"], table[f"{plugin}_u"]
        parts.append(
            f"{label}: {b['rps']:,.1f} vs {u['rps']:,.1f} calls/s = "
            f"x{table[f'{plugin}_ratio']} (p50 {b['p50_us'] / 1000:.1f} vs "
            f"{u['p50_us'] / 1000:.1f} ms, p99 {b['p99_us'] / 1000:.1f} vs "
            f"{u['p99_us'] / 1000:.1f} ms)"
        )
    if table.get("minilm_skipped"):
        parts.append(f"MiniLM not measured ({table['minilm_skipped']})")
    return "; ".join(parts), None


def markdown(res: dict[str, Any]) -> list[str]:
    """The report's section (bench.report.render_markdown)."""
    table = res.get("batching") or {}
    if "sleep_ratio" not in table:
        return []
    lines = [
        "## Micro-batching (issue 26)",
        "",
        (
            f"Closed loop at c={CONCURRENCY} against the same plugin deployed with "
            f"`max_batch_size` {BATCH['max_batch_size']} (wait "
            f"{BATCH['batch_wait_timeout_s']} s) and without, side by side ({table['setup']})."
        ),
        "",
        (
            "| plugin | serve_config | calls/s | p50 ms | p99 ms | failed | mean batch | "
            "batched / unbatched |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for plugin, label in (("sleep", "20 ms per batch"), ("minilm", "MiniLM")):
        if f"{plugin}_b" not in table:
            continue
        for suffix, cfg in (("b", f"max_batch_size {BATCH['max_batch_size']}"), ("u", "default")):
            v = table[f"{plugin}_{suffix}"]
            mean = (v.get("batching") or {}).get("mean_batch_size")
            ratio = (
                f"**{table[f'{plugin}_ratio']}x** (rounds {table[f'{plugin}_ratio_rounds']})"
                if suffix == "b"
                else ""
            )
            lines.append(
                f"| {label} | {cfg} | {v['rps']:,.1f} | {v['p50_us'] / 1000:.2f} | "
                f"{v['p99_us'] / 1000:.2f} | {v['failed']} | "
                f"{'-' if mean is None else mean} | {ratio} |"
            )
    if table.get("minilm_skipped"):
        lines += ["", f"MiniLM not measured: {table['minilm_skipped']}."]
    return lines + [""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--seconds", type=float, default=None, help="per leg and round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--no-minilm", action="store_true")
    parser.add_argument("--no-wrk", action="store_true", help="use the asyncio load generator")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    profile = PROFILES[args.profile]
    with tempfile.TemporaryDirectory(prefix="plughost-batching-") as tmp:
        result = run(
            Path(tmp) / uuid.uuid4().hex[:6],
            seconds=profile.batching_s if args.seconds is None else args.seconds,
            rounds=profile.batching_rounds if args.rounds is None else args.rounds,
            minilm=not args.no_minilm,
            prefer_wrk=not args.no_wrk and wrk_path() is not None,
            warmup_s=profile.batching_warmup_s,
        )
    result["batching"]["profile"] = profile.name
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(judge(result)[0])


if __name__ == "__main__":
    main()
