"""Plain words for a local replica that ran out of memory or died.

A local replica runs under an address-space limit (``RLIMIT_AS``: ``serve_config.memory_gb``,
else ``PLUGHOST_SANDBOX_MEMORY_GB``). Past it, an allocation fails: Python raises
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


def describe_exit(returncode: int | None, limit_mib: int | None, tail: Iterable[str] = ()) -> str:
    """How a replica ended, in words: its memory limit when its output shows an allocation
    failure, the signal's name when it was killed (SIGKILL: what the kernel's out-of-memory
    killer sends), else its exit code."""
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
