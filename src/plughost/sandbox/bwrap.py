"""The bubblewrap command line that wraps one plugin process.

The sandbox root is an empty tmpfs (read-only once set up) holding only: ``/usr`` and the
merged-``/usr`` links, a few files of ``/etc`` (dynamic loader cache, TLS roots, time zone,
resolver config), the Python installation and the server's import path (site-packages, the
plughost source of an editable install), the plugin folder read-only at ``/plugin``, the
namespace's model folder and the shared Hugging Face cache read-only under ``/plughost``
(:mod:`plughost.sandbox.models`), a fresh
``/proc`` for a new pid namespace, a minimal ``/dev``, and size-capped private tmpfs at
``/tmp`` and ``/dev/shm``. ``$PLUGHOST_HOME`` is never bound, and if a bound folder contains
it, an empty tmpfs is mounted over it. Directories bubblewrap creates along the way are made
world-traversable (0755) so the unprivileged uid can reach the bound paths (the real
``/root`` may be 0700).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plughost.egress import EGRESS_MOUNT  # the egress proxy's socket folder

PLUGIN_MOUNT = "/plugin"
ENV_MOUNT = "/plugin-env"  # the plugin environment (plughost.envs), read-only
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/mime.types",
)
SYS_PATHS = ("/sys/devices/system/cpu",)
SANDBOX_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")


@dataclass(frozen=True)
class MountPlan:
    """What one sandboxed process sees besides the system folders.

    ``runtime_paths``: folders bound read-only at their own path (the interpreter, its
    import path). ``hidden``: folders that must stay invisible even when inside a bound
    one ($PLUGHOST_HOME). ``tmp_bytes``: size of each private tmpfs. ``env_dir``: the
    plugin environment, bound read-only at ``/plugin-env``. ``die_with_parent``: bubblewrap
    kills the process when the one that started it dies.
    """

    plugin_dir: Path
    runtime_paths: tuple[Path, ...]
    hidden: tuple[Path, ...] = ()
    tmp_bytes: int = 64 * 1024 * 1024
    share_net: bool = False
    as_root: bool = False
    extra_ro: tuple[Path, ...] = field(default_factory=tuple)
    env_dir: Path | None = None
    # bubblewrap arguments of the namespace models' binds (plughost.sandbox.models)
    model_binds: tuple[str, ...] = ()
    # False for a replica that outlives the server (the next one adopts it): it leads its own session and
    # ends on its own once no server has connected for a while (plughost.replica)
    die_with_parent: bool = True
    # the egress proxy's folder of this sandbox (plughost.egress.proxy), bound read-only at
    # EGRESS_MOUNT: the namespace keeps --unshare-net, its only way out is that socket
    egress_dir: Path | None = None


def runtime_paths(extra: Iterable[Path] = ()) -> tuple[Path, ...]:
    """The folders this interpreter needs: its prefixes and every absolute import-path folder.

    The current working directory is left out of the import path on purpose (``python -m``
    puts it first on ``sys.path`` and it may hold ``$PLUGHOST_HOME``); ``extra`` folders (the
    plughost package's root) are always kept. Paths nested in another one are dropped.
    """
    cwd = Path.cwd().resolve()
    prefixes = [Path(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)]
    imports = [Path(p) for p in sys.path if p and os.path.isabs(p)]
    found = [p for p in _existing_dirs([*prefixes, *imports]) if p != cwd]
    return _outermost([*found, *_existing_dirs(extra)])


def _existing_dirs(candidates: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for raw in candidates:
        try:
            path = raw.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if path.is_dir() and path != Path("/"):
            found.append(path)
    return found


def plughost_root() -> Path:
    """The folder holding the ``plughost`` package (site-packages or an editable checkout)."""
    return Path(__file__).resolve().parent.parent.parent


def _outermost(paths: Iterable[Path]) -> tuple[Path, ...]:
    """The paths not contained in another of them, sorted and unique."""
    unique = sorted(set(paths), key=lambda p: (len(p.parts), str(p)))
    kept: list[Path] = []
    for path in unique:
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return tuple(sorted(kept))


def _ancestors(paths: Iterable[str]) -> list[str]:
    """Every proper ancestor folder of ``paths`` (excluding ``/``), parents first."""
    out: set[str] = set()
    for raw in paths:
        parent = Path(raw).parent
        while str(parent) != "/":
            out.add(str(parent))
            parent = parent.parent
    return sorted(out, key=lambda p: (p.count("/"), p))


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for link in MERGED_USR_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    for path in (*ETC_FILES, *SYS_PATHS):
        if os.path.exists(path):
            args += ["--ro-bind-try", os.path.realpath(path), path]
    return args


PRIVATE_MOUNTS = frozenset({"/", "/proc", "/dev", "/tmp", "/dev/shm"})


def bwrap_command(bwrap: str, plan: MountPlan) -> list[str]:
    """The argv prefix: ``bwrap <options> --``, to be followed by the command to run."""
    args = [bwrap, *(["--die-with-parent"] if plan.die_with_parent else [])]
    args += [
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "plugin",
    ]
    if not plan.share_net:
        args.append("--unshare-net")
    if plan.as_root:
        args += ["--cap-drop", "ALL"]
        for cap in SANDBOX_CAPS:
            args += ["--cap-add", cap]
    size = str(plan.tmp_bytes)
    # The private /tmp and /dev/shm come first: the runtime paths bound below may live under
    # /tmp themselves (a checkout or venv there), and a later tmpfs would hide them.
    args += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", size, "--perms", "1777", "--tmpfs", "/tmp",
        "--size", size, "--perms", "1777", "--tmpfs", "/dev/shm",
    ]
    own = [str(p) for p in (*plan.runtime_paths, *plan.extra_ro)]
    for folder in _ancestors([*own, *ETC_FILES, *SYS_PATHS]):
        if folder not in PRIVATE_MOUNTS:
            args += ["--perms", "0755", "--dir", folder]
    args += _system_binds()
    for path in own:
        args += ["--ro-bind", path, path]
    for hidden in plan.hidden:
        if any(hidden.is_relative_to(p) for p in (*plan.runtime_paths, *plan.extra_ro)):
            args += ["--tmpfs", str(hidden), "--remount-ro", str(hidden)]
    if plan.env_dir is not None:
        args += ["--ro-bind", str(plan.env_dir), ENV_MOUNT]
    args += plan.model_binds
    if plan.egress_dir is not None:
        args += ["--ro-bind", str(plan.egress_dir), EGRESS_MOUNT]
    args += [
        "--ro-bind", str(plan.plugin_dir), PLUGIN_MOUNT,
        "--chdir", PLUGIN_MOUNT,
        "--remount-ro", "/",
        "--",
    ]
    return args


def command_prefix_text(argv: Sequence[str]) -> str:
    """A shell-like rendering for logs."""
    return " ".join(argv)
