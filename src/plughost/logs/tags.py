"""Stream tags: the replica's stdout, stderr and logging all reach the server through one
pipe (its stderr), so the worker starts each line of ``print`` output and of a log record with
a tag the server strips. An untagged line is raw stderr (or a C-level write to fd 1)."""

from __future__ import annotations

STDOUT_TAG = "\x1fo"
LOG_TAG = "\x1fl"
TAGS = {STDOUT_TAG: "stdout", LOG_TAG: "log"}


def split_tag(line: str) -> tuple[str, str]:
    """(stream, line without its tag)."""
    stream = TAGS.get(line[:2])
    if stream is None:
        return "stderr", line
    return stream, line[2:]
