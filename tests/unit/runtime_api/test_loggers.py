"""shared.loggers.services.get_logger."""

from __future__ import annotations

import logging
import sys

from shared.loggers.services import get_logger


def test_get_logger_returns_the_standard_logger_at_info() -> None:
    logger = get_logger("plugin.test.same")
    assert logger is logging.getLogger("plugin.test.same")
    assert logger.level == logging.INFO
    assert get_logger("plugin.test.same") is logger


def test_a_logger_nobody_handles_gets_one_stderr_handler() -> None:
    logging.getLogger("plugin.isolated").propagate = False
    logger = get_logger("plugin.isolated")
    get_logger("plugin.isolated")
    streams = [getattr(h, "stream", None) for h in logger.handlers]
    assert streams == [sys.stderr]


def test_a_level_set_before_is_kept() -> None:
    logging.getLogger("plugin.quiet").setLevel(logging.ERROR)
    assert get_logger("plugin.quiet").level == logging.ERROR
