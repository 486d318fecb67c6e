"""Ending a replica's OS process, of either kind: a child this server started
(:class:`~.replica_launch.ChildProcess`) or one it adopted from an earlier server
(:class:`~.replica_adopted.AdoptedProcess`). A replica leads a session of its own, so a
SIGKILL to its process group ends whatever it started too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

# the lines of the replica client (plughost.backends.local.replica), whose steps these are
logger = logging.getLogger("plughost.backends.local.replica")

KILL_GRACE_S = 2.0
REAP_TIMEOUT_S = 5.0
EXIT_POLL_S = 0.02


class OsProcess(Protocol):
    """What both kinds of replica process offer."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, signum: int) -> None: ...

    def kill_group(self) -> None: ...


def signal_leader(process: OsProcess, signum: int) -> None:
    """Send ``signum`` to the replica process only (not its group)."""
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        logger.debug("replica %d already gone", process.pid)


def kill_group(process: OsProcess) -> None:
    """SIGKILL the replica's process group."""
    try:
        process.kill_group()
    except ProcessLookupError:
        logger.debug("process group %d already gone", process.pid)


async def returncode_within(process: OsProcess, timeout_s: float) -> int | None:
    """The leader's exit code once it has exited, None on timeout.

    Polls the return code instead of waiting on the process, which for a child also waits
    for its output pipes to close and so can hang while a leftover child holds them.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while process.returncode is None and loop.time() < deadline:
        await asyncio.sleep(EXIT_POLL_S)
    return process.returncode


async def kill_and_reap(process: OsProcess) -> None:
    """SIGKILL the whole process group and wait (bounded) for the leader's exit."""
    kill_group(process)
    try:
        async with asyncio.timeout(REAP_TIMEOUT_S):
            await process.wait()
    except TimeoutError:
        logger.warning("replica %d not reaped after SIGKILL", process.pid)
