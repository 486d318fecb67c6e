"""Plain words for a local replica that ran out of memory or died.

A local replica runs in a cgroup whose memory limit is ``serve_config.memory_gb`` (else
``PLUGHOST_SANDBOX_MEMORY_GB``; :mod:`plughost.sandbox.cgroups`): past it the kernel kills
it, and :func:`cgroup_kill` has the words. Without writable cgroups it runs under an
address-space limit (``RLIMIT_AS``) of that size instead. Past it, an allocation fails: Python raises
``MemoryError`` (at load: the start fails with ``MemoryError:`` and nothing more; in a call:
the plugin's error), C++ code aborts (``std::bad_alloc``), and a machine out of memory has the
kernel SIGKILL the process. A bare exception name or ``code -9`` tells the author nothing;
these helpers say what happened and name the limit. Pure functions, no processes."""

from __future__ import annotations

import signal
from collections.abc import Iterable, Mapping
from typing import Any

from plughost.errors import CallFailed, StartFailed

MIB = 1024 * 1024
# what an allocation failure leaves in a message or on stderr
MEMORY_SIGNS = (
    "MemoryError",
    "std::bad_alloc",
    "Cannot allocate memory",
    "out of memory",
    "Out of memory",
)


def memory_limit_mib(serve_config: Mapping[str, Any], default_gb: float) -> int:
    """The replica's address-space limit in MiB, as the sandbox sets it."""
    from plughost.sandbox.host import memory_gb_of  # the sandbox's own reading of the key

    return round(memory_gb_of(serve_config, default_gb) * 1024)


HINT = "serve_config memory_gb raises the limit"


def limit_words(limit_mib: int | None) -> str:
    if limit_mib is None:
        return "the replica ran out of memory"
    return f"the replica exceeded its memory limit of {limit_mib} MiB"


def shows_memory(texts: Iterable[str]) -> bool:
    return any(sign in text for text in texts for sign in MEMORY_SIGNS)


def explain_start(exc: BaseException, limit_mib: int | None) -> BaseException:
    """``exc`` (a failed start) with the memory limit named in its message when the start ran
    out of memory; any other error as it is."""
    tail = tuple(getattr(exc, "output_tail", ()))
    if not isinstance(exc, StartFailed) or not shows_memory((str(exc), *tail)):
        return exc
    text = str(exc).strip().rstrip(":")
    exc.args = (f"{limit_words(limit_mib)} while starting ({text}; {HINT})",)
    return exc


def explain_call(exc: CallFailed, limit_mib: int | None) -> CallFailed:
    """A call that failed with ``MemoryError``: the same error, its message naming the limit."""
    if exc.type_name != "MemoryError":
        return exc
    detail = f"{exc.message}; " if exc.message else ""
    error = CallFailed(exc.type_name, f"{limit_words(limit_mib)} during this call ({detail}{HINT})")
    error.__cause__ = exc
    return error


def cgroup_kill(launch: object) -> str | None:
    """The words :mod:`plughost.sandbox.cgroups` left when the kernel killed a process of
    this launch's cgroup for memory (read as its cgroup was removed), else None."""
    lease = getattr(launch, "cgroup", None)
    return getattr(lease, "ended", None)


def replica_kill(replica: object) -> str | None:
    """:func:`cgroup_kill` of a replica's launch (its ``spec.sandbox``)."""
    return cgroup_kill(getattr(getattr(replica, "spec", None), "sandbox", None))


def killed_call(replica: object) -> CallFailed | None:
    """The error of a call whose replica the kernel OOM-killed in its cgroup under it (its
    cgroup still holds the count), None when it was not: the caller reports it instead of
    handing the call to another replica, which it would kill too."""
    lease = getattr(getattr(getattr(replica, "spec", None), "sandbox", None), "cgroup", None)
    if lease is None:
        return None
    from plughost.sandbox.cgroups import kill_note  # only where a cgroup exists

    killed = lease.ended or kill_note(lease)
    if killed is None:
        return None
    return CallFailed("MemoryError", f"the replica was {killed} during this call ({HINT})")


def note_cgroup_kill(exc: BaseException, launch: object) -> None:
    """A failed start whose cgroup saw an OOM kill: its message says so (in place)."""
    killed = cgroup_kill(launch)
    if killed is not None and isinstance(exc, StartFailed):
        text = str(exc).strip().rstrip(":")
        exc.args = (f"the replica was {killed} while starting ({text}; {HINT})",)


def describe_exit(
    returncode: int | None,
    limit_mib: int | None,
    tail: Iterable[str] = (),
    killed: str | None = None,
) -> str:
    """How a replica ended, in words: ``killed`` (:func:`cgroup_kill`: the kernel killed it
    in its cgroup) first, its memory limit when its output shows an allocation failure, the
    signal's name when it was killed (SIGKILL: what the kernel's out-of-memory killer
    sends), else its exit code."""
    if killed is not None:
        return f"the replica was {killed} ({HINT})"
    if shows_memory(tail):
        return f"{limit_words(limit_mib)} ({HINT})"
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if name == "SIGKILL":
            return (
                "the replica was killed by SIGKILL (what the kernel's out-of-memory killer "
                f"sends when memory runs out; its own limit is {limit_mib} MiB)"
                if limit_mib is not None
                else "the replica was killed by SIGKILL"
            )
        return f"the replica was killed by {name}"
    return f"the replica exited with code {returncode}"
