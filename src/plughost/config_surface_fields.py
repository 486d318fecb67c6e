"""The settings of bounds on the logs API and its stream, status streams and the dashboard; a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class SurfaceFields(BaseSettings):
    """Settings of bounds on the logs API and its stream, status streams and the dashboard."""

    # -- logs and streams
    log_line_max_bytes: int = Field(
        default=16384,
        ge=256,
        description="a replica output line longer than this (UTF-8 bytes, after terminal "
        "control characters are escaped) is cut, with a `[... N bytes cut]` marker",
    )
    streams_max_open: int = Field(
        default=1000,
        ge=1,
        description="open event streams (logs follow, status watch) the server keeps at once; "
        "past it a new one is refused with 503 and Retry-After (each holds a socket: keep it "
        "well under the server's open-file limit, `ulimit -n`)",
    )
    streams_max_per_namespace: int = Field(
        default=200,
        ge=1,
        description="open event streams of one namespace; past it a new one is refused with "
        "429 and Retry-After",
    )
    stream_max_lifetime_s: float = Field(
        default=1800.0,
        gt=0,
        description="an event stream is ended cleanly after this long (clients reconnect: "
        "`plughost logs -f` does, with `since` at its last line)",
    )
    stream_keepalive_s: float = Field(
        default=15.0,
        gt=0,
        description="a quiet event stream sends a `: keepalive` comment this often, so a "
        "dead client is noticed and its stream closed",
    )
