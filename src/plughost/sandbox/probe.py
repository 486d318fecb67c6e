"""Measure which sandbox layers hold on this machine, by running the self-test inside them.

At most three short runs at start-up (~0.1 s each): the full wrapping; if bubblewrap cannot
create a network namespace here, the wrapping without it; if bubblewrap cannot run at all,
the in-process layers alone. Each missing layer gets a reason for the start-up log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from plughost.sandbox import LAYERS
from plughost.sandbox.bwrap import MountPlan, bwrap_command, plughost_root, runtime_paths
from plughost.sandbox.policy import RunnerPolicy, SandboxConfig, rlimits_for


@dataclass
class ProbeResult:
    layers: dict[str, bool]
    bwrap_path: str | None = None
    share_net_only: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def _probe_policy(config: SandboxConfig, root: bool) -> RunnerPolicy:
    rlimits = rlimits_for(config, config.memory_gb, own_uid=root)
    uid = config.uid_base + config.uid_count if root else None
    return RunnerPolicy(uid=uid, gid=uid, rlimits=rlimits, seccomp=True)


def _run(prefix: list[str], policy: RunnerPolicy, config: SandboxConfig, cwd: Path) -> Any:
    """Run the self-test; its JSON result, or the reason it produced none (a str)."""
    argv = [*prefix, sys.executable, "-I", "-m", "plughost.sandbox.selftest"]
    argv += ["--policy", policy.to_json(), "--start-uid", str(os.getuid())]
    for hidden in config.hidden:
        argv += ["--hidden", str(hidden)]
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "HOME": "/tmp", "MALLOC_ARENA_MAX": "2"}
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, timeout=config.probe_timeout_s,
            check=False, start_new_session=True,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        return json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (IndexError, ValueError, UnicodeDecodeError):
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return f"exit code {done.returncode}: {tail[0] if tail else 'no output'}"


_EARLY: dict[SandboxConfig, Future[ProbeResult]] = {}


def begin_probe(config: SandboxConfig) -> None:
    """Start :func:`probe_layers` for ``config`` in a thread now: ``plughost serve`` calls
    this before it imports the server, so that the self-test's processes run meanwhile;
    :func:`take_probe` hands the result over. Nothing with the sandbox off."""
    if config.mode == "off" or config in _EARLY:
        return
    future: Future[ProbeResult] = Future()

    def run() -> None:
        try:
            future.set_result(probe_layers(config))
        except BaseException as exc:  # noqa: BLE001 - re-raised by take_probe
            future.set_exception(exc)

    _EARLY[config] = future
    threading.Thread(target=run, name="plughost-sandbox-probe", daemon=True).start()


def take_probe(config: SandboxConfig) -> ProbeResult:
    """The result :func:`begin_probe` started for this config (waited for), else a probe
    run now."""
    early = _EARLY.pop(config, None)
    return early.result() if early is not None else probe_layers(config)


def probe_layers(config: SandboxConfig) -> ProbeResult:
    """Which layers hold; never raises for a missing layer."""
    root = os.geteuid() == 0
    reasons: dict[str, str] = {}
    scratch = Path(tempfile.mkdtemp(prefix="plughost-probe-"))
    os.chmod(scratch, 0o755)
    try:
        return _probe(config, root, scratch, reasons)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _probe(config: SandboxConfig, root: bool, scratch: Path, reasons: dict[str, str]) -> ProbeResult:
    policy = _probe_policy(config, root)
    bwrap = shutil.which(config.bwrap)
    paths = runtime_paths([plughost_root()])
    result: Any = None
    share_net_only = False
    if bwrap is None:
        reasons["bwrap"] = f"{config.bwrap!r} not found (Debian/Ubuntu: apt-get install bubblewrap)"
    else:
        for share_net in (False, True):
            plan = MountPlan(scratch, paths, config.hidden, config.tmp_bytes, share_net, root)
            result = _run(bwrap_command(bwrap, plan), policy, config, scratch)
            if isinstance(result, dict):
                share_net_only = share_net
                break
            reasons["bwrap" if share_net else "netns"] = f"bwrap failed: {result}"
    if not isinstance(result, dict):
        bwrap = None
        # The uid drop happens inside bwrap's mount namespace, where the interpreter's folders
        # are reachable by any uid; without it the dropped process could not import.
        result = _run([], replace(policy, uid=None, gid=None), config, scratch)
    layers = dict.fromkeys(LAYERS, False)
    details: dict[str, Any] = {"reasons": reasons}
    if isinstance(result, dict):
        layers.update({k: bool(v) for k, v in result.get("layers", {}).items() if k in layers})
        details["selftest"] = result.get("details")
    else:
        reasons.setdefault("seccomp", f"self-test failed: {result}")
    if bwrap is None:
        layers["bwrap"] = layers["netns"] = False
    if share_net_only:
        layers["netns"] = False
    if not root:
        reasons.setdefault("uid", "the server does not run as root, so replicas share its uid")
    for layer in LAYERS:
        if not layers[layer]:
            reasons.setdefault(layer, "the self-test observed it missing")
    return ProbeResult(layers, bwrap, share_net_only, details)
