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

``--claim-fd N`` instead of ``--hold-fd N``: a member of the local backend's replica pool
(:mod:`plughost.backends.local.pool`), started before any release exists. It enters the
in-process sandbox layers (``--sandbox``) at once, then reads one JSON claim from ``N`` up
to end of file: the release's environment (which replaces the spare's own), the worker
options that depend on the release (``--init-kwargs``, ``--requirements``, ``--serving``,
``--drain-timeout``) and what to preload. Its plugin folder is the pool slot's, empty until
the server fills it for the claim. An empty claim (the server let it go) ends it.
"""

from __future__ import annotations

import contextlib
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
CLAIM_FLAG = "--claim-fd"
MAX_CLAIM_BYTES = 16 * 1024 * 1024
# the worker options a claim may set (the rest are the pool member's own)
CLAIM_OPTIONS = frozenset({"--init-kwargs", "--requirements", "--serving", "--drain-timeout"})
# a pool member also imports the runtime API every realtime replica loads (compiled from
# source: no bytecode is written); dropped again at the claim when the plugin folder ships a
# top-level package of the same name, which must win as it does in a replica started cold
RUNTIME_PRELOAD = ("shared.plugins.container", "shared.plugins.inference.serve")


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
    with contextlib.suppress(ImportError):  # the loop replica.main.run_loop runs, if here
        importlib.import_module("uvloop")


def wait_for_go(fd: int) -> bool:
    """Block until the server sends the byte (True) or lets the spare go (False)."""
    try:
        byte = os.read(fd, 1)
    except OSError:
        byte = b""
    finally:
        os.close(fd)
    return bool(byte)


def read_claim(fd: int) -> bytes:
    """Everything the server writes on ``fd`` up to end of file (bounded); the descriptor
    is closed."""
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= MAX_CLAIM_BYTES:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return b""
    finally:
        os.close(fd)
    return b"".join(chunks) if size <= MAX_CLAIM_BYTES else b""


def apply_claim(claim: dict[str, object], args: list[str]) -> None:
    """The release's environment (replacing this process's own) and worker options into
    ``args``, then its learned preload (:mod:`plughost.replica.preload`)."""
    from plughost.replica.preload import apply

    env = claim.get("env")
    if isinstance(env, dict):
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
    options = claim.get("args")
    for flag, value in (options.items() if isinstance(options, dict) else ()):
        if flag in CLAIM_OPTIONS and isinstance(value, str):
            take_option(args, flag)
            args += [flag, value]
    if claim.get("preload") is not None:
        apply(claim["preload"])


def preload_runtime_api() -> None:
    """Import :data:`RUNTIME_PRELOAD` from the runtime API folder (left off ``sys.path``
    again: the worker puts it back after the plugin folder)."""
    from plughost.runtime_api import RUNTIME_API_DIR, TOP_LEVEL_PACKAGES

    sys.dont_write_bytecode = True
    sys.path.insert(0, str(RUNTIME_API_DIR))
    try:
        for name in RUNTIME_PRELOAD:
            importlib.import_module(name)
    except Exception:  # noqa: BLE001 - the worker imports them again, and fails there
        forget_packages(TOP_LEVEL_PACKAGES)
    finally:
        sys.path.remove(str(RUNTIME_API_DIR))


def forget_packages(tops: Sequence[str]) -> None:
    """Drop the modules of the top-level packages ``tops`` from ``sys.modules``."""
    for name in [m for m in sys.modules if m.partition(".")[0] in tops]:
        del sys.modules[name]


def shadowed_packages(plugin_dir: str, tops: Sequence[str]) -> list[str]:
    """The packages of ``tops`` the plugin folder ships itself (a module or a folder)."""
    try:
        entries = os.listdir(plugin_dir)
    except OSError:
        return []
    return [top for top in tops if any(e == top or e.startswith(top + ".") for e in entries)]


def pool_main(fd: int, worker_args: list[str]) -> int:
    """A pool member: sandbox layers now, the release on its claim."""
    preload()
    import orjson

    from plughost.replica.preload import mark_baseline
    from plughost.runtime_api import TOP_LEVEL_PACKAGES

    enter_early(worker_args)
    preload_runtime_api()
    mark_baseline()
    raw = read_claim(fd)
    if not raw:
        return 0
    claim = orjson.loads(raw)
    folder = worker_args[worker_args.index("--plugin-dir") + 1]
    forget_packages(shadowed_packages(folder, TOP_LEVEL_PACKAGES))
    apply_claim(claim if isinstance(claim, dict) else {}, worker_args)
    from plughost.replica.main import main as run_worker

    return run_worker(worker_args)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    claim_fd = take_option(args, CLAIM_FLAG)
    if claim_fd is not None:
        return pool_main(int(claim_fd), args)
    fd, worker_args = split_hold(args)
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
