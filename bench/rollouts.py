"""Failed calls during an automatic rollback (issue 17), run by hand:

    .venv/bin/python -m bench.rollouts [--out bench/results/rollouts.json]

v1 of a small plugin serves the alias under a closed-loop load (8 threads); v2 raises on 30%
of its calls and is deployed as a canary (steps 10/50/100, 5 s each) and, separately, as
blue-green with a 5 s bake window. The guard rolls each back; the figure is the calls that
failed out of all calls, against the bound the step's share gives (share x 30% x the calls
made while v2 took traffic, plus the guard's ``min_failed_calls``).

``bench.run`` (``make bench``) calls :func:`run` on a server of its own and merges the result
into ``latest.json`` (the ``rollback`` goal)."""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

from bench.plughost_sys import NS, PlughostServer

REALTIME = """
COUNT = [0]

class Service:
    def run_inference(self, inputs, parameters):
        COUNT[0] += 1
        if {fail} and COUNT[0] % 10 < 3:
            raise RuntimeError("v2 fails this call")
        return {{"tag": "{tag}"}}

def get_inference_service(**kwargs):
    return Service()
"""
MANIFEST = 'feature_extractor_name = "{name}"\nversion = "{version}"\nfeatures = []\n'
PIPELINE = "def build_steps(extractor_request=None, **kw):\n    return {'steps': []}\n"


def archive(name: str, version: str, fail: bool) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.py", MANIFEST.format(name=name, version=version))
        zf.writestr("pipeline.py", PIPELINE)
        zf.writestr("realtime.py", REALTIME.format(fail=fail, tag=version))
    return buf.getvalue()


def one_rollback(server: PlughostServer, name: str, body: dict[str, Any]) -> dict[str, Any]:
    v1 = server.upload(name, archive(name, "1.0.0", False), "1.0.0")
    server.deploy_and_wait(v1)
    v2 = server.upload(name, archive(name, "2.0.0", True), "2.0.0")
    outcomes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        import httpx

        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=30
        ) as c:
            while not stop.is_set():
                r = c.post(f"/inference/{NS}/{name}", json={"inputs": {}, "parameters": {}})
                outcomes.append(r.status_code)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    started = time.monotonic()
    resp = server.client.post(f"/v1/namespaces/{NS}/plugins/{v2}/deploy", json=body)
    resp.raise_for_status()
    before = len(outcomes)
    final: dict[str, Any] = {}
    while time.monotonic() - started < 120:
        final = server.status(v2)
        if final["status"] in ("deployed", "failed"):
            break
        time.sleep(0.05)
    during = len(outcomes) - before
    took = time.monotonic() - started
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(30)
    share = body.get("canary_steps", [100])[0] / 100 if body.get("strategy") == "canary" else 1.0
    failed = sum(1 for code in outcomes if code != 200)
    return {
        "strategy": body.get("strategy", "blue_green"),
        "status": final.get("status"),
        "error": (final.get("error") or "")[:300],
        "calls": len(outcomes),
        "calls_during_rollout": during,
        "failed": failed,
        "bound": round(share * 0.3 * during + 5, 1),
        "seconds_to_rollback": round(took, 2),
    }


def run(home: Path) -> dict[str, Any]:
    """``{"rollback": [canary run, blue-green bake run]}``."""
    server = PlughostServer(home).start()
    try:
        runs = [
            one_rollback(
                server,
                "bench_canary",
                {"strategy": "canary", "canary_steps": [10, 50, 100], "step_seconds": 5},
            ),
            one_rollback(server, "bench_bake", {"strategy": "blue_green", "bake_seconds": 5}),
        ]
    finally:
        server.stop()
    return {"rollback": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results/rollouts.json"))
    args = parser.parse_args()
    res = run(Path(tempfile.mkdtemp(prefix="bench-rollouts-")))
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["rollback"], indent=2))


if __name__ == "__main__":
    main()
