"""``shared.loggers.services.get_logger``: a standard logger whose records reach the plugin's logs.

A replica's stderr is what plughost keeps as the plugin's output (the server forwards it to
its own log and quotes its tail when a start fails), so every record must end up on stderr.
"""

from __future__ import annotations

import logging
import sys

PLUGIN_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """The standard logger ``name``, set up so that INFO and above reach stderr.

    Contract: the logger's level is INFO unless it was set before; when no handler would
    receive its records (the process configured no logging), a stderr handler is attached to
    it. When the process did configure logging (a plughost replica logs to stderr), records
    simply propagate, so they are never written twice. Calling it again is harmless.
    """
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(PLUGIN_LOG_FORMAT))
        logger.addHandler(handler)
    return logger
