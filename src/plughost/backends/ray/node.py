"""What a Ray replica prepares on its node before its worker starts: the worker's
configuration (sent by the server as init args), the sandbox (with the node's probe result
kept for a while) and the plugin's packages, fetched from the cluster once per node.

Used by the Serve replica (:mod:`plughost.backends.ray.worker`) and by the batch actors
(:mod:`plughost.batch.ray_steps`), which start the same sandboxed worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plughost.backends.ray import private as ray_private
from plughost.sandbox.host import Sandbox
from plughost.sandbox.policy import SandboxConfig
from plughost.sandbox.probe import ProbeResult, probe_layers


@dataclass(frozen=True)
class WorkerConfig:
    """What a replica needs to start its worker (built by the server, sent as init args)."""

    sandbox: dict[str, Any] = field(default_factory=dict)  # SandboxConfig fields
    namespace_id: str | None = None
    serve_config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    plugin_package: str = ""  # gcs:// URI of the plugin folder's package (the server uploaded it)
    env_package: str = ""  # gcs:// URI of the plugin environment's package, if any
    start_timeout_s: float = 60.0
    call_timeout_s: float = 60.0
    drain_timeout_s: float = 2.0
    release_id: int = 0

    def sandbox_config(self) -> SandboxConfig:
        raw = dict(self.sandbox)
        raw["egress_namespaces"] = frozenset(raw.get("egress_namespaces") or ())
        raw["hidden"] = tuple(Path(p) for p in raw.get("hidden") or ())
        for key in ("models_root", "hf_cache"):
            raw[key] = Path(raw[key]) if raw.get(key) else None
        return SandboxConfig(**raw)


def sandbox_fields(config: SandboxConfig) -> dict[str, Any]:
    """A SandboxConfig as plain data for Ray's init args."""
    return {
        "mode": config.mode,
        "bwrap": config.bwrap,
        "egress_namespaces": sorted(config.egress_namespaces),
        "memory_gb": config.memory_gb,
        "max_open_files": config.max_open_files,
        "max_processes": config.max_processes,
        "max_file_bytes": config.max_file_bytes,
        "tmp_bytes": config.tmp_bytes,
        "uid_base": config.uid_base,
        "uid_count": config.uid_count,
        "hidden": [str(p) for p in config.hidden],
        "probe_timeout_s": config.probe_timeout_s,
        # the same paths on every node: a cluster of several machines shares them
        # (plughost.sandbox.models)
        "models_root": str(config.models_root) if config.models_root else None,
        "hf_cache": str(config.hf_cache) if config.hf_cache else None,
        # the worker's cgroup on its node (plughost.sandbox.cgroups)
        "cgroups": config.cgroups,
        "cgroup_pids_max": config.cgroup_pids_max,
        "cgroup_cpu_weight": config.cgroup_cpu_weight,
        "cgroup_namespace_memory_mb": config.cgroup_namespace_memory_mb,
        "cgroup_tag": config.cgroup_tag,
    }


PROBE_TTL_S = 300.0
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def ray_thread_env() -> dict[str, str]:
    """The thread counts Ray set for this replica from its ``num_cpus`` (OMP_NUM_THREADS), so
    the worker's numeric libraries use the CPUs the replica reserved, not every core."""
    return {name: os.environ[name] for name in THREAD_VARS if os.environ.get(name)}


def create_sandbox(config: SandboxConfig, cache: Path | None = None) -> Sandbox:
    """:meth:`Sandbox.create`, with the node's probe result kept for PROBE_TTL_S.

    The probe runs the self-test inside the full wrapping (up to three interpreter starts);
    every replica did it again, a large part of a deploy on a busy node. The result is kept
    per configuration in a folder only the Ray user can write. A cached "held" that no
    longer holds (bubblewrap removed meanwhile) makes the worker's launch fail loudly; it
    never runs the plugin with fewer layers than reported."""
    if config.mode == "off":
        return Sandbox.create(config)
    cache = cache or package_cache()
    key = hashlib.sha256(
        repr((sorted(sandbox_fields(config).items()), sys.executable, os.geteuid())).encode()
    ).hexdigest()[:16]
    path = cache / f"probe-{key}.json"
    result = None
    with contextlib.suppress(OSError, ValueError, TypeError, RuntimeError):
        if _own_folder(cache) and time.time() - path.stat().st_mtime < PROBE_TTL_S:
            raw = json.loads(path.read_text())
            result = ProbeResult(
                raw["layers"], raw["bwrap_path"], raw["share_net_only"], raw["details"]
            )
    if result is None:
        result = probe_layers(config)
        with contextlib.suppress(OSError, TypeError, RuntimeError):
            tmp = _own_folder(cache) / f".probe-{key}-{os.getpid()}"
            tmp.write_text(json.dumps(result.__dict__))
            tmp.rename(path)
    sandbox = Sandbox.from_probe(config, result)  # SandboxUnavailable in strict mode
    sandbox.start_cgroups()  # the worker's cgroup when this node's cgroups are writable
    return sandbox


def warm_probe(fields: dict[str, Any], cache: Path | None = None) -> None:
    """Fill this node's probe cache for the sandbox ``fields`` (what :func:`create_sandbox`
    of a replica on this node reads), so the first replica a fresh cluster starts here does
    not run the self-test inside its start. Run by the server once it is connected to Ray
    (in the background); a no-op while a fresh result is cached or with the sandbox off."""
    config = WorkerConfig(sandbox=fields).sandbox_config()
    if config.mode != "off":
        create_sandbox(config, cache)


def drop_hidden_import_paths(path: list[str], hidden: tuple[Path, ...]) -> None:
    """Remove import-path entries that are, or hold, a hidden folder.

    A Ray worker's ``sys.path`` carries the driver's working directory (for a server started
    in ``$PLUGHOST_HOME``, the home itself); the sandbox binds every import-path folder into
    the worker's view, so such an entry would bind what it must hide."""
    for entry in list(path):
        if not entry or not os.path.isabs(entry):
            continue
        folder = Path(entry)
        if any(h == folder or h.is_relative_to(folder) or folder.is_relative_to(h) for h in hidden):
            path.remove(entry)


def package_cache() -> Path:
    return Path(tempfile.gettempdir()) / f"plughost-ray-packages-{os.getuid()}"


def _own_folder(folder: Path) -> Path:
    """Create ``folder`` (0755) and make sure only this uid can write to it: a folder under
    /tmp made by another user could otherwise feed replicas its own packages or probe."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    info = folder.lstat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022 or not folder.is_dir():
        raise RuntimeError(f"{folder} is not a private folder of this user")
    return folder


def fetch_package(uri: str, cache: Path | None = None) -> Path:
    """A package the server uploaded to the cluster (``gcs://_ray_pkg_<hash>.zip``, the same
    upload a runtime_env would use), unpacked once per node into a cache folder.

    Fetched here rather than named in the replica's runtime_env: an actor without a
    runtime_env of its own starts in one of Ray's prestarted worker processes, while a
    runtime_env per release made Ray start (and set up) a new worker process for every
    replica, the larger part of a deploy."""
    cache = cache or package_cache()
    target = cache / uri.removeprefix("gcs://").removesuffix(".zip")
    if target.is_dir() and _own_folder(cache):
        return target
    _own_folder(cache)
    data = ray_private.read_package(uri)
    if data is None:
        raise RuntimeError(f"the package {uri} is no longer in the cluster")
    unpacked = Path(tempfile.mkdtemp(dir=cache, prefix=".unpack-"))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(unpacked)
    os.chmod(unpacked, 0o755)
    try:
        unpacked.rename(target)
    except OSError:  # another replica on this node unpacked it first
        shutil.rmtree(unpacked, ignore_errors=True)
    return target
