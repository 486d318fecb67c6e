"""The trusted runner's in-process layers, applied before any plugin code is imported.

Order matters: capabilities and ids first (dropping the bounding set needs CAP_SETPCAP, which
the uid change takes away), then rlimits (lowering only), then ``no_new_privs`` and the
seccomp filter last (it refuses ``execve``, and the earlier steps need none of what it
forbids). Standard library only; ``ctypes`` here is plughost's own, loaded before the
plugin's code exists.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource

from plughost.sandbox.policy import RunnerPolicy
from plughost.sandbox.seccomp import SeccompUnavailable, install_filter, seccomp_mode

log = logging.getLogger("plughost.sandbox")

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
CAP_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"
RLIMITS = {
    "AS": resource.RLIMIT_AS,
    "NOFILE": resource.RLIMIT_NOFILE,
    "NPROC": resource.RLIMIT_NPROC,
    "FSIZE": resource.RLIMIT_FSIZE,
    "CORE": resource.RLIMIT_CORE,
}


class SandboxError(Exception):
    """A layer the policy requires could not be applied; the plugin must not run."""


def _prctl(option: int, arg: int = 0) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, *([ctypes.c_ulong] * 4)]
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl({option}): {os.strerror(code)}")


def _drop_bounding_set() -> None:
    """Empty the capability bounding set (best effort: needs CAP_SETPCAP)."""
    try:
        with open(CAP_LAST_CAP_FILE, encoding="ascii") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        try:
            _prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            return


def drop_ids(uid: int, gid: int) -> bool:
    """Switch to ``uid``/``gid`` with no supplementary groups; whether it took effect."""
    _drop_bounding_set()
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        log.warning("sandbox: cannot switch to uid %d: %s", uid, exc)
        return False
    # setresuid from root to another uid has also cleared every capability.
    return os.getuid() == uid and os.geteuid() == uid and os.getgid() == gid


def set_rlimits(limits: dict[str, int]) -> bool:
    """Set each limit as soft and hard value (never raising one); whether all were set."""
    ok = True
    for name, value in limits.items():
        which = RLIMITS[name]
        _, hard = resource.getrlimit(which)
        target = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(which, (target, target))
        except (OSError, ValueError) as exc:
            log.warning("sandbox: cannot set RLIMIT_%s to %d: %s", name, target, exc)
            ok = False
    return ok


def set_no_new_privs() -> bool:
    """``prctl(PR_SET_NO_NEW_PRIVS)``: no exec can ever gain privileges again."""
    try:
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        log.warning("sandbox: cannot set no_new_privs: %s", exc)
        return False
    return True


def enter(policy: RunnerPolicy) -> dict[str, bool]:
    """Apply the policy to this process; the layers that took effect.

    Raises SandboxError when a layer named in ``policy.required`` did not.
    """
    applied: dict[str, bool] = {}
    if policy.uid is not None:
        gid = policy.gid if policy.gid is not None else policy.uid
        applied["uid"] = drop_ids(policy.uid, gid)
    if policy.rlimits:
        applied["rlimits"] = set_rlimits(policy.rlimits)
    applied["no_new_privs"] = set_no_new_privs()
    if policy.seccomp:
        try:
            install_filter(policy.allow_inet)
        except SeccompUnavailable as exc:
            log.warning("sandbox: %s", exc)
        applied["seccomp"] = seccomp_mode() == 2
    missing = [layer for layer in policy.required if not applied.get(layer, False)]
    if missing:
        raise SandboxError(f"sandbox layer(s) could not be applied: {', '.join(missing)}")
    return applied
