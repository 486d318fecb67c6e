"""Which cgroup hierarchy this machine offers plugin processes, and where this server's
cgroups go under it (plughost.sandbox.cgroups)."""

from __future__ import annotations

from pathlib import Path

MOUNT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu")


def own_cgroups(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` as controller -> path (``""``: the unified hierarchy)."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            own[""] = path
        for name in controllers.split(","):
            if name:
                own[name.removeprefix("name=")] = path
    return own


def _under(mount: Path, path: str | None) -> Path:
    """``path`` (a cgroup path) under ``mount``, or the mount when it is not visible."""
    candidate = mount / (path or "/").lstrip("/")
    return candidate if candidate.is_dir() else mount


def detect(
    mount: Path = MOUNT, proc: Path = PROC_SELF_CGROUP
) -> tuple[str, dict[str, Path]] | None:
    """The cgroup version in use and the folder per controller this server's cgroups go
    under (v2: one, key ``""``); None when neither v2 with memory and pids nor v1 memory and
    pids is mounted."""
    try:
        own = own_cgroups(proc.read_text(encoding="ascii"))
    except OSError:
        own = {}
    for unified in (mount, mount / "unified"):
        try:
            controllers = set((unified / "cgroup.controllers").read_text().split())
        except OSError:
            continue
        if {"memory", "pids"} <= controllers:
            return "v2", {"": _under(unified, own.get(""))}
    if all((mount / c / "cgroup.procs").is_file() for c in ("memory", "pids")):
        bases = {c: _under(mount / c, own.get(c)) for c in V1_CONTROLLERS if (mount / c).is_dir()}
        return "v1", bases
    return None
