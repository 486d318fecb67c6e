"""``python -I -m plughost.sandbox.selftest --policy JSON [--hidden PATH]...``

Run once at server start-up inside the same wrapping a replica gets: applies the policy the
way a replica does, then measures what actually holds and prints one JSON object
``{"layers": {...}, "details": {...}}`` on stdout. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys

from plughost.sandbox.policy import RunnerPolicy
from plughost.sandbox.runner import SandboxError, enter


def _interfaces() -> list[str]:
    try:
        with open("/proc/net/dev", encoding="ascii") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return ["?"]
    return sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)


def _root_writable() -> bool:
    probe = "/.plughost-selftest"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def measure(policy: RunnerPolicy, hidden: list[str], start_uid: int) -> dict[str, object]:
    """Apply the policy, then observe each layer from the inside."""
    try:
        applied = enter(policy)
        error = None
    except SandboxError as exc:
        applied, error = {}, str(exc)
    interfaces = _interfaces()
    visible = [h for h in hidden if os.path.exists(h)]
    as_limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    uid = os.getuid()
    layers = {
        "bwrap": not visible and not _root_writable() and os.getpid() != 1 and os.getpid() < 10,
        "netns": interfaces == ["lo"],
        "uid": policy.uid is not None and uid == policy.uid and uid not in (0, start_uid),
        "seccomp": bool(applied.get("seccomp")),
        "rlimits": bool(applied.get("rlimits"))
        and as_limit == policy.rlimits.get("AS", as_limit),
    }
    details = {
        "interfaces": interfaces,
        "visible_hidden_paths": visible,
        "uid": uid,
        "pid": os.getpid(),
        "applied": applied,
        "error": error,
    }
    return {"layers": layers, "details": details}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plughost.sandbox.selftest")
    parser.add_argument("--policy", required=True)
    parser.add_argument("--hidden", action="append", default=[])
    parser.add_argument("--start-uid", type=int, default=0)
    args = parser.parse_args(argv)
    result = measure(RunnerPolicy.from_json(args.policy), args.hidden, args.start_uid)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
