"""The suite's leftover-process check (tests/leftovers.py) on small shell commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "leftovers.py"


def run(shell: str, grace: float = 1.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--grace", str(grace), "--", "bash", "-c", shell],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_an_orphan_that_outlives_the_command_fails_the_run_and_is_killed() -> None:
    marker = "sleep 47.25"
    done = run(f"({marker} &) ; exit 0")
    assert done.returncode == 1
    assert "LEFTOVER PROCESSES: 1" in done.stderr and marker in done.stderr
    alive = subprocess.run(["pgrep", "-f", marker], capture_output=True, check=False)
    assert alive.returncode == 1, "the leftover must be killed"


def test_a_new_session_does_not_escape_the_check() -> None:
    done = run("(setsid sleep 47.5 &) ; exit 0")
    assert done.returncode == 1 and "sleep 47.5" in done.stderr


def test_processes_that_end_within_the_grace_pass_and_the_exit_code_is_kept() -> None:
    assert run("(sleep 0.3 &) ; exit 0", grace=10).returncode == 0
    done = run("(sleep 0.3 &) ; exit 3", grace=10)
    assert done.returncode == 3 and "LEFTOVER" not in done.stderr
