"""Run a command (the test suite) and fail when a process it started outlives it.

``python tests/leftovers.py [--grace S] -- CMD...`` makes this process a child subreaper
(``PR_SET_CHILD_SUBREAPER``): every process the command starts, at any depth, is re-parented
here instead of to init when its parent dies (a replica left behind by a killed server, a daemon
that double-forked). While the command runs, such orphans are reaped as they exit. When it
ends, what is still alive below this process after ``--grace`` seconds is listed, killed, and
the exit code is non-zero, whatever the command returned.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(command name, parent pid, state) of a process, None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, int(fields[1]), fields[0]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def descendants(root: int) -> dict[int, str]:
    """Every live (non-zombie) process below ``root``: pid -> command line."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = _stat(int(entry))
        if info is not None and info[2] != "Z":
            names[int(entry)], parents[int(entry)] = info[0], info[1]
    found: dict[int, str] = {}
    for pid, parent in parents.items():
        up, hops = parent, 0
        while up > 1 and up != root and hops < 64:
            up, hops = parents.get(up, 0), hops + 1
        if up == root:
            found[pid] = _cmdline(pid) or f"[{names[pid]}]"
    return found


def reap_orphans(keep: int) -> None:
    """Reap every exited child but ``keep`` (the command, which subprocess waits for)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == keep:
            return
        os.waitpid(info.si_pid, 0)


def wait_for_command(proc: subprocess.Popen[bytes]) -> int:
    while True:
        try:
            return proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            reap_orphans(proc.pid)


def settle(grace: float) -> dict[int, str]:
    """What is still alive below us after up to ``grace`` seconds (orphans reaped meanwhile)."""
    deadline = time.monotonic() + grace
    while True:
        reap_orphans(-1)
        left = descendants(os.getpid())
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def kill_all(pids: dict[int, str]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    settle(5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 75 s: a replica whose server a test SIGKILLed ends itself after the suite's
    # PLUGHOST_REPLICA_ORPHAN_TIMEOUT_S (60), and a port keeper lets go after 60 s; one that
    # is still there after that was left behind.
    parser.add_argument("--grace", type=float, default=75.0,
                        help="seconds a process may take to exit after the command ends")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")
    become_subreaper()
    proc = subprocess.Popen(command)
    try:
        code = wait_for_command(proc)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        code = wait_for_command(proc)
    left = settle(args.grace)
    if not left:
        return code
    print(f"\nLEFTOVER PROCESSES: {len(left)} process(es) started by the run outlived it "
          f"by {args.grace:.0f} s (now killed):", file=sys.stderr)
    for pid, cmd in sorted(left.items()):
        print(f"  {pid}: {cmd[:300]}", file=sys.stderr)
    kill_all(left)
    return code or 1


if __name__ == "__main__":
    sys.exit(main())
