"""Between a replica's output pipe and the log store: stream tags, caps, followers and a
small excerpt in the server's own log.

Every line of a replica goes through :meth:`ReplicaLogs.emit` on the event loop; it costs a
few comparisons and a deque append (the store writes on its own thread). A release's output
is rate limited (a token bucket: ``burst_bytes`` at once, ``rate_bytes_per_s`` after that);
lines over the limit are counted and dropped, and a marker line says how many. A flood thus
costs the server little CPU, never blocks the replica (its pipe keeps being drained), and
never slows another plugin. The server's own log gets at most ``echo_lines`` lines per
release per ``echo_window_s``, each cut to ``echo_chars``; the rest is only in the store.

Both backends' lines come through here (a Ray replica's over its relay, into the same sink):
each line has its terminal control characters escaped and is cut to ``max_line_bytes``
(:mod:`plughost.logs.terminal`) before the store, a follower or the server's log sees it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from plughost.logs.store import SERVER_REPLICA, LogLine, LogStore
from plughost.logs.tags import split_tag
from plughost.logs.terminal import bounded_line

echo_log = logging.getLogger("plughost.replica.excerpt")

PluginKey = tuple[str, str]  # (namespace_id, plugin_id)
Follower = Callable[[LogLine], None]
Mask = Callable[[str, str], str]  # (namespace_id, line) -> the line, secret values masked


@dataclass(frozen=True)
class OutputLimits:
    max_line_bytes: int = 16384  # UTF-8 bytes of a kept line, after escaping
    rate_bytes_per_s: float = 1024 * 1024
    burst_bytes: float = 4 * 1024 * 1024
    echo_lines: int = 5
    echo_window_s: float = 60.0
    echo_chars: int = 300


class _ReleaseState:
    __slots__ = (
        "dropped",
        "dropped_bytes",
        "echo_start",
        "echoed",
        "refilled",
        "tokens",
        "unechoed",
    )

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = burst
        self.refilled = now
        self.dropped = 0
        self.dropped_bytes = 0
        self.echoed = 0
        self.echo_start = now
        self.unechoed = 0


class ReplicaLogs:
    """The output side of every local replica: see the module docstring."""

    def __init__(
        self, store: LogStore, limits: OutputLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        mask: Mask | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or OutputLimits()
        # secret values of the line's organization, masked before anything else sees it
        self._mask = mask
        self._clock = clock
        self._releases: dict[int, _ReleaseState] = {}
        self._followers: dict[PluginKey, dict[object, Follower]] = {}

    def output(
        self, release_id: int, replica: str, namespace_id: str | None, plugin_id: str
    ) -> Callable[[str], None]:
        """The line callback of one replica's output pipe."""
        key = (namespace_id or "", plugin_id)

        def emit(text: str) -> None:
            self.emit(key, release_id, replica, text)

        return emit

    def emit(self, key: PluginKey, release_id: int, replica: str, text: str) -> None:
        stream, text = split_tag(text)
        if self._mask is not None:  # before the cut, which could leave part of a value
            text = self._mask(key[0], text)
        limits = self.limits
        text = bounded_line(text, limits.max_line_bytes)  # escaped, then cut
        state = self._state(release_id)
        size = len(text) + 1
        now = self._clock()
        state.tokens = min(limits.burst_bytes,
                           state.tokens + (now - state.refilled) * limits.rate_bytes_per_s)
        state.refilled = now
        if state.tokens < size:
            state.dropped += 1
            state.dropped_bytes += size
            return
        state.tokens -= size
        if state.dropped:
            self._append(key, release_id, SERVER_REPLICA, "log", (
                f"[plughost] {state.dropped} lines ({state.dropped_bytes} bytes) dropped: the "
                f"release wrote more than {limits.rate_bytes_per_s / 1048576:g} MiB/s"), True)
            state.dropped = state.dropped_bytes = 0
        self._append(key, release_id, replica, stream, text)
        self._echo(state, key, replica, stream, text, now)

    def _append(self, key: PluginKey, release_id: int, replica: str, stream: str, text: str,
                dropped: bool = False) -> None:
        entry = self.store.append(release_id, replica, stream, text, dropped)
        if entry is None:
            return
        followers = self._followers.get(key)
        if followers:
            for follower in list(followers.values()):
                follower(entry)

    def _echo(self, state: _ReleaseState, key: PluginKey, replica: str, stream: str,
              text: str, now: float) -> None:
        """A few lines into the server's log; the rest only in the store."""
        limits = self.limits
        if now - state.echo_start >= limits.echo_window_s:
            if state.unechoed:
                echo_log.info("%s/%s: %d more output lines not shown here (GET .../logs)",
                              key[0], key[1], state.unechoed)
            state.echoed, state.unechoed, state.echo_start = 0, 0, now
        if state.echoed < limits.echo_lines:
            state.echoed += 1
            echo_log.info("%s/%s %s %s: %s", key[0], key[1], replica, stream,
                          text[:limits.echo_chars])
        else:
            state.unechoed += 1

    def _state(self, release_id: int) -> _ReleaseState:
        state = self._releases.get(release_id)
        if state is None:
            if len(self._releases) > 4096:  # forget the oldest releases' counters
                for old in sorted(self._releases)[:2048]:
                    del self._releases[old]
            state = _ReleaseState(self.limits.burst_bytes, self._clock())
            self._releases[release_id] = state
        return state

    # -- followers and tails ----------------------------------------------------------------
    def follow(self, key: PluginKey, token: object, follower: Follower) -> None:
        """Call ``follower`` (on the event loop) with each new line of the plugin id."""
        self._followers.setdefault(key, {})[token] = follower

    def unfollow(self, key: PluginKey, token: object) -> None:
        followers = self._followers.get(key)
        if followers is not None:
            followers.pop(token, None)
            if not followers:
                del self._followers[key]

    def last_lines(self, release_id: int, count: int = 20) -> list[str]:
        """The release's last lines as text (`replica stream: line`), for failure messages."""
        return [f"{e.replica} {e.stream}: {e.line[:500]}"
                for e in self.store.tail(release_id, count)]
