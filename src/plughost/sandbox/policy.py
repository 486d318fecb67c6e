"""What the runner applies inside a plugin process: passed as one JSON argument.

Standard library only: the replica and the manifest reader import it before plugin code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

RLIMIT_NAMES = ("AS", "NOFILE", "NPROC", "FSIZE", "CORE")
MIB = 1024**2
GIB = 1024**3


@dataclass(frozen=True)
class SandboxConfig:
    """The sandbox settings, copied from Settings (see config.py for their meaning)."""

    mode: str = "auto"
    bwrap: str = "bwrap"
    egress_namespaces: frozenset[str] = frozenset()
    memory_gb: float = 2.0
    max_open_files: int = 1024
    max_processes: int = 256
    max_file_bytes: int = 64 * MIB
    tmp_bytes: int = 64 * MIB
    uid_base: int = 1_900_000_000
    uid_count: int = 65_536
    hidden: tuple[Path, ...] = ()
    probe_timeout_s: float = 30.0
    # the namespace model folders' parent and the shared Hugging Face cache
    # (plughost.sandbox.models); each bound read-only when set
    models_root: Path | None = None
    hf_cache: Path | None = None
    # cgroup limits (plughost.sandbox.cgroups): "auto" or "off", pids.max, CPU weight, the
    # namespace cap by default (MiB, 0: none) and the tag of this server's cgroups (home hash)
    cgroups: str = "off"
    cgroup_pids_max: int = 512
    cgroup_cpu_weight: int = 100
    cgroup_namespace_memory_mb: int = 0
    cgroup_tag: str = "plughost"


def rlimits_for(
    config: SandboxConfig, memory_gb: float, own_uid: bool, address_space: bool = True
) -> dict[str, int]:
    """The rlimits of one plugin process. NPROC is counted per real uid, so it is set only
    when the process runs under a uid of its own (``own_uid``). ``address_space``: set
    RLIMIT_AS (not when a cgroup bounds the process's resident memory instead)."""
    rlimits = {
        "NOFILE": config.max_open_files,
        "FSIZE": config.max_file_bytes,
        "CORE": 0,
    }
    if address_space:
        rlimits["AS"] = int(memory_gb * GIB)
    if own_uid:
        rlimits["NPROC"] = config.max_processes
    return rlimits


@dataclass(frozen=True)
class RunnerPolicy:
    """The in-process layers for one plugin process.

    ``uid``/``gid``: drop to these ids (needs CAP_SETUID/CAP_SETGID, which the host grants only
    inside bubblewrap); None keeps the current ids. ``rlimits``: name (see
    :data:`RLIMIT_NAMES`) to value, set as both soft and hard limit. ``seccomp``: install the
    filter; ``allow_inet`` lets it permit inet sockets (egress allowed for the namespace).
    ``required``: layers whose failure must stop the process (strict mode).
    """

    uid: int | None = None
    gid: int | None = None
    rlimits: dict[str, int] = field(default_factory=dict)
    seccomp: bool = False
    allow_inet: bool = False
    required: tuple[str, ...] = ()

    def to_json(self) -> str:
        """The policy as compact JSON (for a command-line argument)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunnerPolicy:
        """Parse :meth:`to_json` output; ValueError (or TypeError) on anything else."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"sandbox policy is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise TypeError("sandbox policy must be a JSON object")
        rlimits = raw.get("rlimits") or {}
        unknown = set(rlimits) - set(RLIMIT_NAMES)
        if unknown:
            raise ValueError(f"unknown rlimits in sandbox policy: {sorted(unknown)}")
        return cls(
            uid=_optional_int(raw.get("uid")),
            gid=_optional_int(raw.get("gid")),
            rlimits={str(k): int(v) for k, v in rlimits.items()},
            seccomp=bool(raw.get("seccomp")),
            allow_inet=bool(raw.get("allow_inet")),
            required=tuple(str(x) for x in raw.get("required") or ()),
        )


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer id, got {value!r}")
    return value


@dataclass(eq=False)
class CgroupLease:
    """The cgroup of one plugin process (plughost.sandbox.cgroups): its folder per
    controller (one on cgroup v2), its memory limit and its namespace's cap (MiB).
    ``ended``: set when the cgroup is removed, in words, if the kernel killed a process of
    it for memory."""

    version: str
    dirs: tuple[str, ...]
    memory_mb: int
    namespace_mb: int | None = None
    ended: str | None = None


@dataclass(frozen=True)
class SandboxLaunch:
    """How to start one sandboxed plugin process (built by the server, used by the backend).

    ``prefix``: the wrapper argv (``bwrap ... --``) to put before the interpreter, empty when
    bubblewrap is not used. ``plugin_dir``: the plugin folder as the process sees it.
    ``policy_json``: the :class:`RunnerPolicy` for the runner. ``env``: variables to add to
    the process environment. ``uid``: the leased uid, if any (returned when the process ends).
    Launchers start :attr:`argv_prefix`, which puts the cgroup entry first.
    """

    prefix: tuple[str, ...]
    plugin_dir: str
    policy_json: str
    env: dict[str, str] = field(default_factory=dict)
    uid: int | None = None
    # the cgroup the process enters before anything runs (``enter``: the argv that puts it
    # there and execs the rest; plughost.sandbox.cgroups), if any
    enter: tuple[str, ...] = ()
    cgroup: CgroupLease | None = field(default=None, compare=False)

    @property
    def argv_prefix(self) -> tuple[str, ...]:
        """What goes before the interpreter: the cgroup entry, then the wrapper."""
        return (*self.enter, *self.prefix)
