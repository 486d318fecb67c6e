"""Following a plugin's status until a final state: the server's event stream
(``status?watch=true``), or polling when the server answers the watch with a plain status.

People see each phase change as a line and a live progress display (phase, elapsed, ETA);
scripts (``quiet``) see nothing until the final status is returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Self

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from plughost.cli.author.client import SSE_TYPE, AuthorClient, decode_event, sse_events
from plughost.cli.author.errors import CliError
from plughost.cli.author.resolve import is_final

POLL_S = 0.5
STREAM_READ_S = 15.0
PHASES = ("queued", "pending", "in_progress", "deployed")

StatusHook = Callable[[dict[str, Any]], None]


class StreamEnded(Exception):
    """The server ended the watch stream before a final status (its lifetime bound): the
    stream is opened again."""


class EtaColumn(ProgressColumn):
    """Seconds left by the server's last estimate, counting down between updates."""

    def render(self, task: Task) -> Text:
        deadline = task.fields.get("deadline")
        if deadline is None:
            return Text("ETA -", style="progress.remaining")
        return Text(f"ETA {max(0.0, deadline - time.monotonic()):.0f}s", style="progress.remaining")


def progress_percent(status: str, elapsed_s: float, eta_s: float | None) -> float:
    """Where the bar stands: the phase's share, or elapsed / (elapsed + ETA) if further."""
    if status in ("deployed", "failed", "not_deployed"):
        return 100.0
    index = PHASES.index(status) if status in PHASES else 0
    by_phase = 100.0 * index / (len(PHASES) - 1)
    if eta_s is None or elapsed_s + eta_s <= 0:
        return by_phase
    return max(by_phase, min(99.0, 100.0 * elapsed_s / (elapsed_s + eta_s)))


def status_stream(
    client: AuthorClient, plugin_id: str, on_status: StatusHook, deadline: float
) -> dict[str, Any] | None:
    """Feed ``on_status`` from the watch stream until a final status (returned). None when
    the server gave no stream (the caller polls then); StreamEnded when it ended early."""
    path = client.plugin_path(plugin_id, "/status")
    read_s = max(1.0, min(STREAM_READ_S, deadline - time.monotonic()))
    with client.stream(path, {"watch": "true"}, read_timeout_s=read_s) as response:
        if not response.headers.get("content-type", "").startswith(SSE_TYPE):
            response.read()
            first = decode_event(response.text)
            if first is not None:
                on_status(first)
            return None
        for data in sse_events(response.iter_lines()):
            event = decode_event(data)
            if event is None or "status" not in event:
                continue
            on_status(event)
            if is_final(event):
                return event
    raise StreamEnded


def follow_status(
    client: AuthorClient, plugin_id: str, on_status: StatusHook, timeout_s: float
) -> dict[str, Any]:
    """The plugin's final status, following it live; CliError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    use_stream = True
    while time.monotonic() < deadline:
        if use_stream:
            try:
                final = status_stream(client, plugin_id, on_status, deadline)
            except httpx.ReadTimeout:
                final = None  # a quiet stream: check once, then open it again
            except StreamEnded:
                final = None  # ended by the server: the same, not at once
                time.sleep(POLL_S)
            else:
                use_stream = final is not None
            if final is not None:
                return final
        current = client.status(plugin_id)
        on_status(current)
        if is_final(current):
            return current
        if not use_stream:
            time.sleep(POLL_S)
    raise CliError(f"{plugin_id} reached no final state within {timeout_s:g} s")


class LiveStatus:
    """The people's view of a followed status: a line per phase change, a progress bar."""

    def __init__(self, console: Console, plugin_id: str) -> None:
        self.console = console
        self.plugin_id = plugin_id
        self.started = time.monotonic()
        self.last: tuple[str, str] | None = None
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[phase]:<12}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            EtaColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task(plugin_id, total=100, phase="waiting", deadline=None)

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, status: dict[str, Any]) -> None:
        phase = str(status.get("status"))
        message = str(status.get("message") or "")
        elapsed = time.monotonic() - self.started
        eta = status.get("estimated_completion_seconds")
        eta_s = float(eta) if isinstance(eta, (int, float)) and phase not in PHASES[3:] else None
        self.progress.update(
            self.task,
            completed=progress_percent(phase, elapsed, eta_s),
            phase=phase,
            deadline=None if eta_s is None else time.monotonic() + eta_s,
            refresh=True,
        )
        if (phase, message) != self.last:
            self.last = (phase, message)
            self.progress.console.print(
                f"  {elapsed:6.1f}s  [bold]{escape(phase)}[/bold]  {escape(message)}",
                soft_wrap=True,
            )
