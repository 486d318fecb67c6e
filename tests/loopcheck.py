"""pytest plugin: fail a test during which an app run in this process stalled its loop.

Register it from tests/conftest.py (``pytest_plugins = ["loopcheck"]``; tests/ is on
sys.path there) or with ``-p loopcheck``. It turns on the server's loop watchdog
(``PLUGHOST_LOOP_STALL_MS``, read by Settings) for every app the tests build in process, e.g.
``create_app(Settings(...))`` run through its lifespan behind ``httpx.ASGITransport``; the
watchdog logs each stall on the ``plughost.loop`` logger, and the autouse fixture fails the
test that logged one. Servers in subprocesses (``LiveServer``) are checked by
``LiveServer.stop()`` instead. Known stalls can be let through with ``LOOP_STALL_ALLOW`` or
``TEST_LOOP_STALL_ALLOW`` (tests/support.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from support import LOOP_STALL_PREFIX, assert_no_loop_stalls

STALL_MS = "100"


def pytest_configure(config: pytest.Config) -> None:
    # before any Settings is built, so that session fixtures' apps watch their loop too
    os.environ.setdefault("PLUGHOST_LOOP_STALL_MS", STALL_MS)


class _StallLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(LOOP_STALL_PREFIX):
            self.lines.append(message)


@pytest.fixture(autouse=True)
def no_loop_stalls() -> Iterator[None]:
    """Fail the test when an in-process app's watchdog reported a stall during it."""
    logger = logging.getLogger("plughost.loop")
    handler = _StallLines()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert_no_loop_stalls("\n".join(handler.lines))
