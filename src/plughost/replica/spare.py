"""``python -I -m plughost.replica.spare --hold-fd N <the worker's arguments>``: a replica
started ahead of need (the warm spare of a group scaled to zero).

It pays up front what costs most of a replica start: the interpreter starts inside the
sandbox's wrapper (bubblewrap) and imports the worker. Then it blocks on
one byte from the inherited descriptor ``N``. The byte runs the worker exactly as ``python -m
plughost.replica`` would with the other arguments (the in-process sandbox layers, the
requirement check, the plugin's load, the start-up handshake); end of file (the server let
the spare go, or exited) ends it with code 0 and nothing loaded. No plugin code runs before
the byte.

``--preload JSON`` (:mod:`plughost.replica.preload`, learned by an earlier replica of the
release): before blocking, the spare enters the in-process sandbox layers (``--sandbox``,
which the worker then does not enter again) and appends ``--env-path``, then sets the
learned variables, imports the learned modules (the plugin's dependencies, never its own
files) and runs the manifest's requirement check, so the byte leaves only the plugin's own
load.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

HOLD_FLAG = "--hold-fd"
# the worker (asyncio, orjson, the protocol, the loader) and the layers it enters after the
# byte; not the runtime API (``shared.*``): a plugin folder may ship a package of that name,
# which must win as it does in a replica started cold
PRELOAD = ("plughost.replica.main", "plughost.sandbox.policy", "plughost.sandbox.runner")


PRELOAD_FLAG = "--preload"


def take_option(args: list[str], flag: str) -> str | None:
    """Remove ``flag value`` from ``args``; the value, or None when absent."""
    if flag not in args:
        return None
    at = args.index(flag)
    value = args[at + 1]
    del args[at : at + 2]
    return value


def split_hold(argv: Sequence[str]) -> tuple[int, list[str]]:
    """The hold descriptor and the worker's own arguments; ValueError without the flag."""
    args = list(argv)
    fd = take_option(args, HOLD_FLAG)
    if fd is None:
        raise ValueError(f"{HOLD_FLAG} is required")
    return int(fd), args


def enter_early(args: list[str]) -> None:
    """The sandbox layers and the plugin environment's path, ahead of the byte; ``--sandbox``
    leaves ``args`` (the worker must not enter twice), ``--env-path`` stays (it checks)."""
    policy = take_option(args, "--sandbox")
    if policy is not None:
        from plughost.sandbox.policy import RunnerPolicy
        from plughost.sandbox.runner import enter

        enter(RunnerPolicy.from_json(policy))
    if "--env-path" in args:
        env_path = args[args.index("--env-path") + 1]
        if env_path not in sys.path:
            sys.path.append(env_path)


def check_early(args: list[str]) -> None:
    """The manifest's requirement check (a scan of every installed distribution), ahead of
    the byte: passed, ``--requirements`` leaves ``args``; failed, it stays, and the worker
    fails the start with its own message after the byte."""
    if "--requirements" not in args:
        return
    from pathlib import Path

    from plughost.replica.main import check_requirements

    at = args.index("--requirements")
    folder = args[args.index("--plugin-dir") + 1] if "--plugin-dir" in args else "."
    try:
        check_requirements(args[at + 1], Path(folder))
    except Exception:  # noqa: BLE001 - reported by the worker, after the byte
        return
    del args[at : at + 2]


def preload() -> None:
    """Import what a replica start imports before it loads the plugin (no plugin code)."""
    for name in PRELOAD:
        importlib.import_module(name)


def wait_for_go(fd: int) -> bool:
    """Block until the server sends the byte (True) or lets the spare go (False)."""
    try:
        byte = os.read(fd, 1)
    except OSError:
        byte = b""
    finally:
        os.close(fd)
    return bool(byte)


def main(argv: Sequence[str] | None = None) -> int:
    fd, worker_args = split_hold(sys.argv[1:] if argv is None else argv)
    learned = take_option(worker_args, PRELOAD_FLAG)
    preload()
    if learned is not None:
        import orjson

        from plughost.replica.preload import apply, mark_baseline

        enter_early(worker_args)
        mark_baseline()
        apply(orjson.loads(learned))
        check_early(worker_args)
    if not wait_for_go(fd):
        return 0
    from plughost.replica.main import main as run_worker

    return run_worker(worker_args)


if __name__ == "__main__":
    raise SystemExit(main())
