"""A debugging net for stray closes (``PLUGHOST_FD_CHECK``): every close that fails with
EBADF is logged with the stack that made it.

A close(2) of a descriptor number its caller no longer owns is silent when the number was
reused meanwhile: it closes somebody else's file, and the damage shows up later, far away
(an upload's ``seek`` answering EBADF). The owner's own close then fails with EBADF, and
that failure is the one trace left. So a failed close is worth a log line with its stack:
the line names the victim, and its descriptor number leads to the culprit.

:func:`install` wraps :func:`os.close` and the real close of :class:`socket.socket` (the
Python-level ``_real_close`` every socket close goes through). Closes made in C (a file
object's, libuv's) cannot be wrapped; their victims' closes are what this sees. The wrapper
changes nothing else: the error is raised again as it was.

The culprit is usually no failed close but a close made by the garbage collector: a uvloop
stream transport left open and then collected closes its descriptor in libuv, and the socket
object it held closes the same number again in its finalizer (both in C, in whatever thread
the collection ran). Each of those objects warns (ResourceWarning, ignored by default), so
the check also logs every ResourceWarning, with the prefix :data:`GC_CLOSE_PREFIX`.

Install it before the event loop's library is imported: uvloop binds ``os.close`` once, at
its import.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import traceback
import warnings
from collections.abc import Callable
from typing import Any

# A stable prefix: tests/support.py fails a test whose server log holds this.
FAILED_CLOSE_PREFIX = "plughost-fdcheck: failed close"
# A socket, file or event-loop transport that nobody closed is closed by the garbage
# collector, from whatever thread it runs in: the Python warning for it gets this prefix.
GC_CLOSE_PREFIX = "plughost-fdcheck: closed by the garbage collector"
OTHER_PREFIX = "plughost-fdcheck: resource warning"
# ... and a server that runs with the check logs this once, at start
INSTALLED_LINE = "plughost-fdcheck: on"

log = logging.getLogger("plughost.server.fdcheck")

_lock = threading.Lock()
_originals: dict[str, Callable[..., Any]] = {}


def report_failed_close(fd: int, exc: OSError, what: str) -> None:
    """Log one failed close with the stack that made it (the hook's own frames left out)."""
    stack = "".join(traceback.format_stack()[:-2])
    log.error(
        "%s of %s %d (%s) in thread %s; stack:\n%s",
        FAILED_CLOSE_PREFIX, what, fd, errno.errorcode.get(exc.errno or 0, exc.errno),
        threading.current_thread().name, stack.rstrip(),
    )


def _checked_os_close(original: Callable[[int], None]) -> Callable[[int], None]:
    def close(fd: int) -> None:
        try:
            original(fd)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                report_failed_close(fd, exc, "descriptor")
            raise

    close.__doc__ = original.__doc__
    return close


def _checked_socket_close(original: Callable[..., None]) -> Callable[..., None]:
    def _real_close(self: socket.socket, *args: Any) -> None:
        fd = self.fileno()
        try:
            original(self, *args)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                report_failed_close(fd, exc, "socket")
            raise

    return _real_close


def _logged_resource_warnings(original: Callable[..., None]) -> Callable[..., None]:
    def showwarning(
        message: Warning | str, category: type[Warning], filename: str, lineno: int,
        file: Any = None, line: str | None = None,
    ) -> None:
        if not issubclass(category, ResourceWarning):
            original(message, category, filename, lineno, file, line)
            return
        # "unclosed ...": a descriptor closed by a finalizer; other resource warnings (a
        # child process still running when its Popen went) close nothing
        prefix = GC_CLOSE_PREFIX if str(message).startswith("unclosed") else OTHER_PREFIX
        log.warning(
            "%s: %s (while %s:%d ran, in thread %s)",
            prefix, message, filename, lineno, threading.current_thread().name,
        )

    return showwarning


def install() -> bool:
    """Wrap the closes and log ResourceWarnings (once per process); whether this call
    installed them."""
    with _lock:
        if _originals:
            return False
        _originals["os.close"] = os.close
        _originals["socket._real_close"] = socket.socket._real_close  # type: ignore[attr-defined]
        _originals["showwarning"] = warnings.showwarning
        os.close = _checked_os_close(_originals["os.close"])
        socket.socket._real_close = _checked_socket_close(  # type: ignore[attr-defined]
            _originals["socket._real_close"]
        )
        warnings.showwarning = _logged_resource_warnings(_originals["showwarning"])
        warnings.filterwarnings("always", category=ResourceWarning)
    log.warning("%s: a close that fails with EBADF is logged with its stack", INSTALLED_LINE)
    return True


def uninstall() -> None:
    """Put the original closes and warning display back (tests; the warning filter added
    stays: pytest restores the filters after each test)."""
    with _lock:
        if not _originals:
            return
        os.close = _originals.pop("os.close")
        socket.socket._real_close = _originals.pop(  # type: ignore[attr-defined]
            "socket._real_close"
        )
        warnings.showwarning = _originals.pop("showwarning")


def installed() -> bool:
    return bool(_originals)
