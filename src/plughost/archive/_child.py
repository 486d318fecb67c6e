"""Run one intake child process and read the single JSON object it reports.

Both intake children (the manifest reader and the security scan) follow one protocol: the
child writes exactly one JSON object to its standard output and may write anything to
standard error. This module starts the child in its own session with a scrubbed environment,
reads both pipes under a wall-clock deadline, bounds the output it keeps, then kills whatever
is left of the child's process group. Failures raise the caller's ArchiveError subclass, worded
with the caller's :class:`ChildLabels`.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from plughost.archive.errors import ArchiveError
from plughost.archive.limits import IntakeLimits

MAX_RESULT_BYTES = 8 * 1024 * 1024
MAX_STDERR_TAIL = 2000
_READ_BYTES = 64 * 1024
_POLL_S = 0.01


def child_argv(script: Path, plugin_root: Path, limits: IntakeLimits, *args: str) -> list[str]:
    """Command line that runs an intake child script (stdlib only) on ``plugin_root``.

    Every intake child (this manifest reader and the security scan) is started through this
    one function: through the server's sandbox hook ``limits.manifest_command`` when set
    (the hook's argv ends with the script and the plugin root; ``args`` follow them), else
    as ``python -I -B script plugin_root args...``.
    """
    if limits.manifest_command is not None:  # the server's sandbox wraps the child
        return [*limits.manifest_command(script, plugin_root), *args]
    return [sys.executable, "-I", "-B", str(script), str(plugin_root), *args]


def child_environment(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the child: PATH and LANG from ``parent`` (default: this process)."""
    source = os.environ if parent is None else parent
    return {
        "PATH": source.get("PATH", os.defpath),
        "LANG": source.get("LANG", "C.UTF-8"),
    }


@dataclass(frozen=True)
class ChildLabels:
    """How errors name the child: ``subject`` for time-outs, ``output`` for oversized
    results, ``reader`` for a child that stopped without a result."""

    subject: str
    output: str
    reader: str


def run_json_child(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    labels: ChildLabels,
    error: type[ArchiveError],
) -> dict[str, Any]:
    """Run ``argv`` and return the JSON object it printed; raise ``error`` otherwise."""
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    too_slow = f"{labels.subject} did not finish within {timeout_s:g} s"
    try:
        deadline = time.monotonic() + timeout_s
        stdout, stderr = _collect(process, deadline, too_slow, labels, error)
        exited = _wait_unreaped(process.pid, deadline)
    finally:
        _kill_group(process)
    if not exited:
        raise error([too_slow])
    return _parse_result(stdout, stderr, process.returncode, labels, error)


def _collect(
    process: subprocess.Popen[bytes],
    deadline: float,
    too_slow: str,
    labels: ChildLabels,
    error: type[ArchiveError],
) -> tuple[bytes, bytes]:
    """Read both pipes until they close; keep the result, and only a tail of stderr."""
    assert process.stdout is not None and process.stderr is not None
    stdout = bytearray()
    stderr = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, stdout)
        selector.register(process.stderr, selectors.EVENT_READ, stderr)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise error([too_slow])
            for key, _ in selector.select(remaining):
                _drain(selector, key.fileobj, key.data)
            if len(stdout) > MAX_RESULT_BYTES:
                raise error([f"{labels.output} is larger than {MAX_RESULT_BYTES} bytes"])
            del stderr[:-MAX_STDERR_TAIL]
    return bytes(stdout), bytes(stderr)


def _drain(selector: selectors.BaseSelector, stream: Any, sink: bytearray) -> None:
    pipe: IO[bytes] = stream
    chunk = os.read(pipe.fileno(), _READ_BYTES)
    if chunk:
        sink.extend(chunk)
    else:
        selector.unregister(pipe)


def _wait_unreaped(pid: int, deadline: float) -> bool:
    """Wait for ``pid`` to exit without reaping it, so its group id stays reserved."""
    while True:
        try:
            status = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped elsewhere: it has exited
            return True
        if status is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left of the child's session, then reap the child."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def _parse_result(
    stdout: bytes,
    stderr: bytes,
    returncode: int | None,
    labels: ChildLabels,
    error: type[ArchiveError],
) -> dict[str, Any]:
    try:
        result = json.loads(stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        result = None
    if isinstance(result, dict):
        return result
    tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
    detail = f": {tail[0][:300]}" if tail else ""
    raise error(
        [f"{labels.reader} stopped without a result ({_describe_exit(returncode)}){detail}"]
    )


def _describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"
