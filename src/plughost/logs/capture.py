"""Capturing replica output from the local backend without reaching into it.

The local backend forwards each line a replica writes to the logger
``plughost.replica.output`` (``"replica %d: %s"``, pid and line), from a task started while
the replica launched. The controller launches a release's replicas with :data:`REPLICA_OUTPUT`
set to that release's sink; tasks copy the context they are created in, so every line of
those replicas (and of replicas started later to replace them) is logged inside it. A filter
on that logger hands the line to the sink and drops the record, so the server's own log only
gets :mod:`plughost.logs.output`'s rate-limited excerpt. Lines logged outside such a context
(a replica started by a test, say) pass through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar

OUTPUT_LOGGER = "plughost.replica.output"

Sink = Callable[[int, str], None]  # (replica pid, line)
REPLICA_OUTPUT: ContextVar[Sink | None] = ContextVar("plughost_replica_output", default=None)


class CaptureFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        sink = REPLICA_OUTPUT.get()
        if sink is None:
            return True
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], int):
            sink(args[0], str(args[1]))
        else:
            sink(0, record.getMessage())
        return False


def install() -> CaptureFilter:
    """Attach the filter (and let INFO records reach it whatever the server's log level)."""
    capture = CaptureFilter()
    logger = logging.getLogger(OUTPUT_LOGGER)
    logger.setLevel(logging.INFO)
    logger.addFilter(capture)
    return capture


def uninstall(capture: CaptureFilter) -> None:
    logging.getLogger(OUTPUT_LOGGER).removeFilter(capture)
