"""cgroups of plugin processes: resident memory, pids and CPU weight per replica and batch
worker, and a parent per namespace whose memory limit caps the sum of its plugins.

Layout (each controller's folder on cgroup v1, the one unified folder on v2), under the
cgroup this server runs in::

    plughost-<home tag>-<server pid>/      this server's root (removed at clean shutdown)
        ns-<namespace>/                    memory cap of the namespace (when it has one)
            p-<token>/                     one replica or batch worker: memory, pids, CPU
        pool/<member>/                     replica pool members before their claim

A process enters its cgroup before anything of it runs: its argv starts with a tiny shell
(:data:`ENTER_SCRIPT`) that writes its own pid into each ``cgroup.procs`` and then execs the
wrapper (bubblewrap) and the interpreter, so every later process of it (bubblewrap's child,
the plugin's forks) is born inside. No wait on the server, no pre-exec hook (the launcher
keeps vfork). A pool member, started before any namespace, is moved at its claim, while it
is blocked on its claim pipe and before the plugin is loaded.

Past its memory limit, a process is killed by the kernel's OOM killer within its cgroup
(the server and the neighbours are outside it). When the cgroup is removed,
:meth:`CgroupTree.release` reads its OOM events and writes the words the status shows into
the lease. Folders are only ever removed with ``rmdir``: the kernel refuses while a
process is still inside, so an adopted replica's cgroup outlives its server and is swept by
a later start once empty.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import re
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

from plughost.sandbox.cgroup_detect import MOUNT, detect
from plughost.sandbox.policy import MIB, CgroupLease

log = logging.getLogger("plughost.sandbox")

V2_CONTROLLERS = ("memory", "pids", "cpu")
# argv[0] of the shell, then the cgroup.procs files, "--", the command
ENTER_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
SHELL = "/bin/sh"
POOL_GROUP = "pool"
PEAK_SLACK = 4 * MIB  # a peak this close to a cgroup's own limit: it hit that limit
NamespaceMemory = Callable[[str], "int | None"]


def remove_dir(path: Path) -> None:
    """rmdir (a cgroup folder goes only once no process and no child is left in it)."""
    os.rmdir(path)


def group_name(namespace_id: str | None) -> str:
    """The parent folder of a namespace's processes (a safe folder name)."""
    if namespace_id is None:
        return "ns-"
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", namespace_id) and namespace_id not in (".", ".."):
        return f"ns-{namespace_id}"
    return f"ns-x{namespace_id.encode().hex()[:60]}"


def _write(path: Path, value: object) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(f"{value}\n")


def _write_optional(path: Path, value: object) -> None:
    """Write a control file this kernel may not have (best effort)."""
    if path.exists():
        try:
            _write(path, value)
        except OSError as exc:
            log.debug("cgroups: cannot write %s: %s", path, exc)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except OSError:
        return ""


def _number(path: Path) -> int:
    """A control file holding one number (0 when absent or not a number)."""
    try:
        return int(_read(path).strip() or 0)
    except ValueError:
        return 0


def _counters(text: str) -> dict[str, int]:
    """``key value`` lines (memory.events, memory.oom_control) as a dict."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune(folder: Path) -> bool:
    """Remove ``folder`` and its sub-folders bottom-up where empty; whether it went."""
    if not folder.is_dir():
        return True
    for child in list(folder.iterdir()):
        if child.is_dir():
            prune(child)
    try:
        remove_dir(folder)
    except OSError:
        return False
    return True


def kill_note(lease: CgroupLease) -> str | None:
    """Words for an OOM kill in ``lease``'s cgroup (still there), None when there was none.
    Its memory folder is the first of its folders (v1: memory comes first; v2: the one)."""
    if not lease.dirs:
        return None
    memory = Path(lease.dirs[0])
    if lease.version == "v2":
        events = _counters(_read(memory / "memory.events"))
        kills, hits = events.get("oom_kill", 0), events.get("max", 0)
        peak = _number(memory / "memory.peak")
    else:
        kills = _counters(_read(memory / "memory.oom_control")).get("oom_kill", 0)
        # failcnt: not counted by every kernel (6.x counts v1 memory failures only where
        # tracked), so the peak is compared with the limit as well
        hits = _number(memory / "memory.failcnt") + _number(memory / "memory.memsw.failcnt")
        peak = _number(memory / "memory.max_usage_in_bytes")
    if kills <= 0:
        return None
    if hits > 0 or peak >= lease.memory_mb * MIB - PEAK_SLACK or not lease.namespace_mb:
        return f"killed: past its memory limit of {lease.memory_mb} MB (cgroup)"
    return (
        f"killed: its namespace went past its memory cap of {lease.namespace_mb} MB "
        "(cgroup; the namespace's replicas and batch workers share it)"
    )


class CgroupTree:
    """This server's cgroups (see the module's text). Built by :func:`start_cgroups`."""

    def __init__(
        self,
        version: str,
        bases: dict[str, Path],
        tag: str,
        pids_max: int = 512,
        cpu_weight: int = 100,
        default_namespace_mb: int = 0,
        namespace_memory_mb: NamespaceMemory | None = None,
        pid: int | None = None,
    ) -> None:
        self.version = version
        self.bases = bases
        self.tag = tag
        self.name = f"plughost-{tag}-{pid if pid is not None else os.getpid()}"
        self.roots = {c: b / self.name for c, b in bases.items()}
        self.pids_max = pids_max
        self.cpu_weight = cpu_weight
        self.default_namespace_mb = default_namespace_mb
        # the namespace's memory quota in MiB (helper E's PolicyBook.max_memory_mb); None
        # or 0: the default cap above
        self.namespace_memory_mb = namespace_memory_mb
        self.pending: list[Path] = []  # folders still busy at release, removed later

    @property
    def label(self) -> str:
        """The memory layer as /healthz names it."""
        return f"cgroup-{self.version}"

    # -- set-up and tear-down ----------------------------------------------------------------
    def setup(self) -> None:
        """Sweep a crashed server's leftovers, create the root (OSError: not writable)."""
        self.sweep_stale()
        for root in self.roots.values():
            root.mkdir(exist_ok=True)
        if self.version == "v2":
            base, root = self.bases[""], self.roots[""]
            self._enable(base)
            self._enable(root)

    def _enable(self, folder: Path) -> None:
        """Enable memory and pids (required) and cpu (if offered) for ``folder``'s children."""
        offered = set(_read(folder / "cgroup.controllers").split())
        wanted = [c for c in V2_CONTROLLERS if c in offered or c != "cpu"]
        enabled = set(_read(folder / "cgroup.subtree_control").split())
        for name in wanted:
            if name not in enabled:
                try:
                    _write(folder / "cgroup.subtree_control", f"+{name}")
                except OSError:
                    if name != "cpu":
                        raise

    def sweep_stale(self) -> None:
        """Remove what servers that are gone left behind (``plughost-<tag>-<pid>`` of a dead
        pid, any home; empty folders only: a replica still running, adopted by a later
        server, keeps its own)."""
        for base in self.bases.values():
            with contextlib.suppress(OSError):
                for folder in base.iterdir():
                    pid = folder.name.rpartition("-")[2]
                    if (
                        folder.name.startswith("plughost-")
                        and pid.isdigit()
                        and not _pid_alive(int(pid))
                    ):
                        prune(folder)

    def close(self) -> None:
        """Remove this server's cgroups where empty (at clean shutdown)."""
        pending, self.pending = self.pending, []
        for folder in pending:
            self._remove(folder, waits=(0.01, 0.05, 0.2))
        for root in self.roots.values():
            prune(root)

    # -- one process ------------------------------------------------------------------------
    def namespace_cap_mb(self, namespace_id: str | None) -> int | None:
        quota = None
        if self.namespace_memory_mb is not None and namespace_id is not None:
            try:
                quota = self.namespace_memory_mb(namespace_id)
            except (LookupError, TypeError, ValueError, OSError, RuntimeError) as exc:
                log.warning("cgroups: namespace memory of %s unknown: %s", namespace_id, exc)
        if quota:
            return int(quota)
        return self.default_namespace_mb or None

    def lease(
        self, namespace_id: str | None, memory_mb: int, pool: bool = False, name: str | None = None
    ) -> CgroupLease:
        """A new cgroup for one process of ``namespace_id`` (a pool member's, ``pool``)."""
        group = POOL_GROUP if pool else group_name(namespace_id)
        cap = None if pool else self.namespace_cap_mb(namespace_id)
        child = name or f"p-{secrets.token_hex(5)}"
        dirs: list[str] = []
        try:
            for controller, root in self.roots.items():
                parent = root / group
                parent.mkdir(exist_ok=True)
                if controller in ("", "memory") and not pool:
                    self._memory_limit(parent, cap)
                folder = parent / child
                folder.mkdir()
                dirs.append(str(folder))
                self._limits(controller, folder, memory_mb)
        except OSError:
            self._remove_dirs(dirs)
            raise
        return CgroupLease(self.version, tuple(dirs), memory_mb, cap)

    def _memory_limit(self, folder: Path, mb: int | None) -> None:
        """The memory limit of ``folder`` (None: none); swap may not exceed it either."""
        if self.version == "v2":
            value: object = mb * MIB if mb else "max"
            _write(folder / "memory.max", value)
            _write_optional(folder / "memory.swap.max", 0 if mb else "max")
            return
        value = mb * MIB if mb else -1
        try:
            _write(folder / "memory.limit_in_bytes", value)
        except OSError as exc:  # v1: EBUSY when the namespace already uses more
            if exc.errno != errno.EBUSY:
                raise
            log.warning("cgroups: %s already uses more than %s MiB", folder.name, mb)
        _write_optional(folder / "memory.memsw.limit_in_bytes", value)

    def _limits(self, controller: str, folder: Path, memory_mb: int) -> None:
        if controller in ("", "memory"):
            self._memory_limit(folder, memory_mb)
            if controller == "memory":  # v1: a moved process takes its charges along
                _write_optional(folder / "memory.move_charge_at_immigrate", 3)
        if controller in ("", "pids"):
            _write(folder / "pids.max", self.pids_max)
        if controller == "":
            _write_optional(folder / "cpu.weight", self.cpu_weight)
        elif controller == "cpu":
            _write_optional(folder / "cpu.shares", max(2, self.cpu_weight * 1024 // 100))

    @staticmethod
    def enter_argv(lease: CgroupLease) -> tuple[str, ...]:
        """The argv before a command that runs it inside ``lease``'s cgroup."""
        procs = [str(Path(d) / "cgroup.procs") for d in lease.dirs]
        return (SHELL, "-c", ENTER_SCRIPT, "plughost-cgroup", *procs, "--")

    def move(self, lease: CgroupLease, namespace_id: str | None) -> None:
        """Move every process of ``lease`` (a pool member's) into a new cgroup of
        ``namespace_id``; ``lease`` then names the new one. OSError when it cannot be."""
        new = self.lease(namespace_id, lease.memory_mb)
        try:
            for old_dir, new_dir in zip(lease.dirs, new.dirs, strict=True):
                for pid in _read(Path(old_dir) / "cgroup.procs").split():
                    with contextlib.suppress(ProcessLookupError):
                        _write(Path(new_dir) / "cgroup.procs", pid)
        except OSError:
            self._remove_dirs(new.dirs)
            raise
        old = lease.dirs
        lease.dirs, lease.namespace_mb = new.dirs, new.namespace_mb
        self._remove_dirs(old)

    def release(self, lease: CgroupLease) -> None:
        """The process has exited: note an OOM kill in ``lease.ended``, remove its cgroup."""
        lease.ended = self.kill_note(lease)
        self._remove_dirs(lease.dirs)

    def kill_note(self, lease: CgroupLease) -> str | None:
        """Words for an OOM kill in ``lease``'s cgroup, None when there was none."""
        return kill_note(lease)

    def _remove_dirs(self, dirs: tuple[str, ...] | list[str]) -> None:
        self.pending, retry = [], self.pending
        for folder in [*(Path(d) for d in dirs), *retry]:
            if not self._remove(folder):
                self.pending.append(folder)

    def _remove(self, folder: Path, waits: tuple[float, ...] = (0.0,)) -> bool:
        """rmdir ``folder``, killing what is left in it (a plugin's stray forks) between
        tries; never sleeps on the event loop by default (a busy folder waits in
        :attr:`pending` for the next release, or :meth:`close`)."""
        for wait in (*waits, None):
            try:
                remove_dir(folder)
                return True
            except FileNotFoundError:
                return True
            except OSError:
                if wait is None:
                    return False
            self._kill_inside(folder)
            if wait:
                time.sleep(wait)
        return False

    def _kill_inside(self, folder: Path) -> None:
        if self.version == "v2" and (folder / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(folder / "cgroup.kill", 1)
            return
        for pid in _read(folder / "cgroup.procs").split():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


def start_cgroups(
    mode: str,
    tag: str,
    pids_max: int,
    cpu_weight: int,
    default_namespace_mb: int = 0,
    mount: Path = MOUNT,
) -> CgroupTree | None:
    """This server's cgroup tree, or None (off, none mounted, or not writable: the
    address-space rlimit stays the memory limit); logs which."""
    if mode == "off":
        log.info("cgroups off (PLUGHOST_CGROUPS=off): the memory limit is an address-space rlimit")
        return None
    found = detect(mount)
    if found is None:
        log.warning("cgroups: no cgroup v2 or v1 memory+pids hierarchy; memory limit: rlimit")
        return None
    version, bases = found
    tree = CgroupTree(version, bases, tag, pids_max, cpu_weight, default_namespace_mb)
    try:
        tree.setup()
        atexit.register(tree.close)  # a process that ends without its shutdown (a CLI)
    except OSError as exc:
        log.warning("cgroups %s not writable (%s); memory limit: rlimit", version, exc)
        tree.close()
        return None
    log.info(
        "cgroups %s: plugin processes run in %s", version, ", ".join(map(str, tree.roots.values()))
    )
    return tree
