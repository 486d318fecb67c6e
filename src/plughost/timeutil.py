"""Time helpers: everything is timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; treat them as the UTC they were stored as."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z` suffix, or None."""
    if value is None:
        return None
    return _iso(value)


@lru_cache(maxsize=8192)
def _iso(value: datetime) -> str:
    # remembered: every status poll formats the same few release times again, and the
    # formatting was 8% of the status endpoint's time in a profile (a lookup is 15x cheaper)
    return as_utc(value).isoformat().replace("+00:00", "Z")
