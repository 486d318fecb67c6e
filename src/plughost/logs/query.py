"""The logs endpoint's arithmetic: parsing `since`, choosing the window, wire records."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from plughost.errors import BadRequestError
from plughost.logs.store import LogLine
from plughost.logs.terminal import escape_controls

MAX_LIMIT = 5000
DEFAULT_LIMIT = 200
# ASCII digits, matched whole: the pattern the OpenAPI document publishes for `since`
AGE_PATTERN = r"^([0-9]+(?:\.[0-9]+)?)([smhd])$"
_AGE = re.compile(AGE_PATTERN)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(since: str | None, now: float | None = None) -> float | None:
    """Seconds since the epoch from an ISO 8601 time or an age like `10m`; None if absent."""
    if since is None:
        return None  # an empty value is refused below, as the OpenAPI pattern says
    age = _AGE.fullmatch(since)
    if age:
        # an age older than the epoch means every line: no line predates 1970, and a
        # cursor before it could not be written back as `next_since`
        ago = (now if now is not None else time.time()) - float(age[1]) * _UNIT_S[age[2]]
        return max(ago, 0.0)
    try:
        # RFC 3339 also allows a lower-case t and z
        value = datetime.fromisoformat(since.upper())
    except ValueError as exc:
        raise BadRequestError(
            f"since must be an ISO 8601 time or an age like 30s, 10m, 2h, 1d; got {since!r}"
        ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return max(value.timestamp(), 0.0)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequestError(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def window(lines: Sequence[LogLine], since: float | None, limit: int) -> tuple[list[LogLine], bool]:
    """(the lines to answer, truncated): with `since` the oldest `limit` lines after it,
    without the newest `limit`; truncated when lines of that window are left out or a cap
    dropped some (a drop marker inside it)."""
    if since is None:
        chosen = list(lines[-limit:])
        truncated = len(lines) > limit or any(e.dropped for e in chosen)
        return chosen, truncated
    since += 5e-7  # times are whole microseconds; a cursor read back from ISO may be 1 ulp off
    after = [e for e in lines if e.time > since]
    chosen = after[:limit]
    return chosen, len(after) > limit or any(e.dropped for e in chosen)


def cap_window(
    lines: Sequence[LogLine], max_bytes: int, keep_newest: bool
) -> tuple[list[LogLine], int]:
    """(the lines of ``lines`` whose text fits in ``max_bytes``, how many were left out): the
    newest ones, or the oldest ones. A stream's first window is kept to this, so an open
    stream that its client does not read holds little of the server's memory."""
    order = reversed(lines) if keep_newest else iter(lines)
    kept: list[LogLine] = []
    size = 0
    for entry in order:
        size += len(entry.line) + 64
        if size > max_bytes and kept:
            break
        kept.append(entry)
    if keep_newest:
        kept.reverse()
    return kept, len(lines) - len(kept)


def iso_time(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def wire(entry: LogLine) -> dict[str, Any]:
    return {
        "time": iso_time(entry.time),
        "release_id": entry.release_id,
        "replica": entry.replica,
        "stream": entry.stream,
        # escaped when captured; again here for lines kept before that (idempotent)
        "line": escape_controls(entry.line),
    }
