"""Tag the replica's ``print`` output and log records so the server can tell its streams
apart (:mod:`plughost.logs.tags`); raw writes to the stderr fd stay untagged (stderr)."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from plughost.logs.tags import LOG_TAG, STDOUT_TAG


class TaggedStdout:
    """``sys.stdout`` for plugin code: each line written starts with the stdout tag."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._at_line_start = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        body = text.replace("\n", "\n" + STDOUT_TAG)
        if text.endswith("\n"):
            body = body[: -len(STDOUT_TAG)]
        if self._at_line_start:
            body = STDOUT_TAG + body
        self._at_line_start = text.endswith("\n")
        self._target.write(body)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # fileno, buffer, encoding, ...
        return getattr(self._target, name)


class TaggedFormatter(logging.Formatter):
    """Each line of a record (tracebacks too) starts with the log tag."""

    def format(self, record: logging.LogRecord) -> str:
        return LOG_TAG + super().format(record).replace("\n", "\n" + LOG_TAG)


def tag_output() -> None:
    """Wrap ``sys.stdout`` and configure logging to stderr with tagged lines."""
    sys.stdout = TaggedStdout(sys.stdout)  # type: ignore[assignment]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TaggedFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
