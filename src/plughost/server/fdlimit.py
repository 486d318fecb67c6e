"""The server's own open-file limit, raised at start so its event streams fit in it.

Each open event stream (a logs follow, a status watch) holds a socket, and
``PLUGHOST_STREAMS_MAX_OPEN`` allows 1,000 of them by default, while many systems start a
process with a soft limit of 1,024 descriptors. The soft limit may be raised up to the hard
one without privileges, so the server does that, as far as it needs. Plugin processes are
not affected: the sandbox sets their own limit (``PLUGHOST_SANDBOX_MAX_OPEN_FILES``)."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

MARGIN = 1024  # the server's other descriptors: replicas, the database, logs, clients


def raise_open_file_limit(streams: int) -> int:
    """Raise the soft RLIMIT_NOFILE to hold ``streams`` streams plus a margin (never above the
    hard limit, never lowered); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = streams + MARGIN
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if hard != resource.RLIM_INFINITY and hard < streams + MARGIN:
        log.warning(
            "the open-file limit (%d) is lower than PLUGHOST_STREAMS_MAX_OPEN (%d) plus %d: "
            "streams may fail with 'too many open files' before that bound; raise `ulimit -Hn` "
            "or lower the setting",
            hard,
            streams,
            MARGIN,
        )
    return soft
