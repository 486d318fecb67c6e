"""Where a cold start's time goes (issue 17), run by hand or by ``bench.elastic``:

    .venv/bin/python -m bench.cold_start [--rounds 7] [--out bench/results/cold-start.json]

Each stage is timed on its own, median of ``--rounds``, for the hash embedder (hash16):

- ``interpreter``: ``python -I -c pass``, spawn to exit;
- ``sandbox_wrap``: the same under the replica's bubblewrap prefix, minus ``interpreter``
  (namespaces, mounts; 0 when the machine has no bubblewrap);
- ``runtime_imports``: importing the worker (``plughost.replica.main``: asyncio, orjson, the
  protocol, the runtime API shim), timed inside a fresh interpreter;
- ``sandbox_enter``: the in-process layers (uid, rlimits, seccomp), timed inside the wrapper;
- ``plugin_load``: ``load_plugin`` of hash16 once the runtime is imported (its modules and
  constructor);
- ``replica_start``: a whole sandboxed replica start through the local backend (spawn,
  handshake, connection) plus one call, as the server does it on a wake.

The stages overlap the whole only roughly (``replica_start`` also pays process spawns from
the server's event loop and the socket handshake); their sum against the whole shows what
is left for the server side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bench.plughost_sys import EXAMPLES

HASH16 = EXAMPLES / "hash_embedder"

IMPORTS = (
    "import time; t = time.perf_counter(); import plughost.replica.main; "
    "print(time.perf_counter() - t)"
)
LOAD = (
    "import sys, time; from pathlib import Path; import plughost.replica.main; "
    "from plughost.replica.loader import load_plugin; t = time.perf_counter(); "
    "load_plugin(Path(sys.argv[1]), {}); print(time.perf_counter() - t)"
)
# the same load after importing what a warm spare imports first (plughost.replica.preload):
# argv[2] is the JSON an earlier replica learned; without it, learn it and print it first
LOAD_AFTER_DEPS = (
    "import os, sys, time, orjson; from pathlib import Path; import plughost.replica.main; "
    "from plughost.replica.loader import load_plugin, PLUGIN_PACKAGE; "
    "from plughost.runtime_api import RUNTIME_API_DIR; "
    "from plughost.replica.preload import apply, learn; folder = Path(sys.argv[1]); "
    "learned = orjson.loads(sys.argv[2]) if len(sys.argv) > 2 else None; "
    "before, env = set(sys.modules), dict(os.environ); apply(learned); "
    "t = time.perf_counter(); load_plugin(folder, {}); took = time.perf_counter() - t; "
    "learned is None and print(orjson.dumps(learn(before, env, (folder, RUNTIME_API_DIR), "
    "(PLUGIN_PACKAGE,))).decode()); print(took)"
)
ENTER = (
    "import sys, time; from plughost.sandbox.policy import RunnerPolicy; "
    "from plughost.sandbox.runner import enter; p = RunnerPolicy.from_json(sys.argv[1]); "
    "t = time.perf_counter(); enter(p); print(time.perf_counter() - t)"
)


def _wall(argv: list[str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, cwd=cwd, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _lines(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> list[str]:
    """The child's stdout lines; RuntimeError with its stderr's tail when it fails."""
    out = subprocess.run(argv, check=False, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"exit {out.returncode}: {out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()


def _inner(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    return float(_lines(argv, cwd, env)[-1])


def _median(fn: Any, rounds: int) -> float:
    return statistics.median(fn() for _ in range(rounds))


def _sandbox() -> Any:
    from plughost.config import Settings
    from plughost.sandbox.host import Sandbox, config_from_settings

    return Sandbox.create(config_from_settings(Settings()))


def stages(rounds: int) -> dict[str, Any]:
    """Every stage's median in seconds, and the sandbox's layers."""
    py = sys.executable
    sandbox = _sandbox()
    launch = sandbox.replica_launch(HASH16, "ns_default", {}) if sandbox.enabled else None
    prefix = list(launch.prefix) if launch is not None else []
    out: dict[str, Any] = {"layers": dict(sandbox.layers), "rounds": rounds}
    out["interpreter_s"] = _median(lambda: _wall([py, "-I", "-c", "pass"]), rounds)
    wrapped = _median(lambda: _wall([*prefix, py, "-I", "-c", "pass"]), rounds)
    out["sandbox_wrap_s"] = max(0.0, wrapped - out["interpreter_s"]) if prefix else 0.0
    out["runtime_imports_s"] = _median(lambda: _inner([py, "-I", "-c", IMPORTS]), rounds)
    if launch is not None:
        policy = launch.policy_json
        out["sandbox_enter_s"] = _median(
            lambda: _inner([*prefix, py, "-I", "-c", ENTER, policy]), rounds
        )
        sandbox.release(launch)
    else:
        out["sandbox_enter_s"] = 0.0
    out["plugin_load_s"] = plugin_load_s(HASH16, rounds, sandbox)
    out["replica_start_s"] = statistics.median(
        asyncio.run(_replica_starts(sandbox, rounds))
    )
    parts = ("interpreter_s", "sandbox_wrap_s", "runtime_imports_s", "sandbox_enter_s",
             "plugin_load_s")
    out["stages_sum_s"] = sum(out[p] for p in parts)
    return out


@contextlib.contextmanager
def _wrapped(folder: Path, sandbox: Any) -> Iterator[tuple[list[str], str, dict[str, str]]]:
    """A replica's sandbox wrapper for ``folder`` while the block runs: its command prefix,
    the folder as the wrapped process sees it, and its environment (the sandbox's HOME and
    TMPDIR: model loaders write caches)."""
    sandbox = sandbox or _sandbox()
    launch = sandbox.replica_launch(folder, "ns_default", {}) if sandbox.enabled else None
    prefix = list(launch.prefix) if launch is not None else []
    seen = launch.plugin_dir if launch is not None else str(folder)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(launch.env if launch else {})}
    try:
        yield prefix, seen, env
    finally:
        if launch is not None:
            sandbox.release(launch)


def plugin_load_s(folder: Path, rounds: int, sandbox: Any = None) -> float:
    """Median seconds of ``load_plugin`` of ``folder`` in a fresh interpreter inside the
    replica's sandbox wrapper, once the runtime is imported."""
    with _wrapped(folder, sandbox) as (prefix, seen, env):
        cmd = [*prefix, sys.executable, "-I", "-c", LOAD, seen]
        return _median(lambda: _inner(cmd, cwd=folder, env=env), rounds)


def plugin_load_pair(folder: Path, sandbox: Any = None) -> tuple[float, float]:
    """Seconds of ``load_plugin`` of ``folder`` in two fresh interpreters inside the replica's
    sandbox wrapper: the whole load (its dependencies' imports too), then the load once those
    imports are done as a warm spare does them (the plugin's own load: the model's)."""
    with _wrapped(folder, sandbox) as (prefix, seen, env):
        cmd = [*prefix, sys.executable, "-I", "-c", LOAD_AFTER_DEPS, seen]
        learned, whole = _lines(cmd, cwd=folder, env=env)[-2:]
        return float(whole), _inner([*cmd, learned], cwd=folder, env=env)


async def _replica_starts(sandbox: Any, rounds: int) -> list[float]:
    """Seconds from asking the local backend for a replica of hash16 to its first answer."""
    from plughost.backends.base import GroupSpec
    from plughost.backends.local.backend import LocalBackend
    from plughost.config import Settings

    backend = LocalBackend(Settings(), sandbox if sandbox.enabled else None)
    body = orjson.dumps({"inputs": {"text": "hello"}, "parameters": {}})
    times = []
    try:
        for i in range(rounds):
            spec = GroupSpec(
                deployment_name="custom_plugin_bench_cold_1_0_0", release_id=900 + i,
                plugin_dir=HASH16, num_replicas=1, serve_config={}, namespace_id="ns_default",
            )
            started = time.perf_counter()
            group = await backend.start(spec)
            await group.call_body(body)
            times.append(time.perf_counter() - started)
            await group.stop(0)
    finally:
        await backend.shutdown()
    return times


def render(res: dict[str, Any]) -> str:
    rows = [
        ("interpreter start (python -I)", "interpreter_s"),
        ("sandbox wrapper (bubblewrap namespaces, mounts)", "sandbox_wrap_s"),
        ("runtime imports (plughost.replica)", "runtime_imports_s"),
        ("sandbox layers in process (uid, rlimits, seccomp)", "sandbox_enter_s"),
        ("plugin import and constructor (hash16)", "plugin_load_s"),
        ("sum of the stages", "stages_sum_s"),
        ("whole replica start + first call (local backend)", "replica_start_s"),
    ]
    lines = ["| stage | median ms |", "|---|---|"]
    lines += [f"| {label} | {res[key] * 1000:.0f} |" for label, key in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/results/cold-start.json"))
    args = parser.parse_args()
    res = stages(args.rounds)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(render(res))


if __name__ == "__main__":
    main()
