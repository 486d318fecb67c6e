"""The author's observation commands: ``history`` (releases, events, alias moves) and
``logs`` (the replicas' output, optionally followed live).

``logs`` never prints terminal control: the server sends control characters escaped
(``\\x1b``), and whatever reaches this command raw anyway (an older server) is stripped,
sequences whole (:func:`plughost.logs.terminal.strip_controls`). ``--json`` prints JSON,
whose strings escape them. A followed stream the server ends (its lifetime bound) is opened
again from the last line printed."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from plughost.cli.author.client import SSE_TYPE, AuthorClient, decode_event, sse_events
from plughost.cli.author.options import (
    DEFAULT_NAMESPACE,
    DEFAULT_URL,
    JsonOpt,
    KeyOpt,
    NamespaceOpt,
    PluginArg,
    UrlOpt,
)
from plughost.cli.author.output import console, emit_json, say
from plughost.cli.author.session import connected, format_log_line, resolve
from plughost.logs.terminal import strip_controls

FOLLOW_POLL_S = 1.0


def _seconds(value: Any) -> str:
    return f"{float(value):.2f}s" if isinstance(value, (int, float)) else "-"


def _print_release(release: dict[str, Any]) -> None:
    outcome = str(release.get("outcome") or release.get("status"))
    colour = {"deployed": "green", "failed": "red", "running": "yellow"}.get(outcome, "white")
    say(
        f"[bold]release {escape(str(release.get('release_id')))}[/bold] "
        f"v{escape(str(release.get('version')))}  [{colour}]{escape(outcome)}[/{colour}]  "
        f"queued {escape(str(release.get('queued_at') or '-'))}  "
        f"took {_seconds(release.get('duration_s'))}"
    )
    if release.get("error"):
        say(f"  [red]error:[/red] {escape(str(release['error']))}")
    for event in release.get("events") or []:
        say(
            f"  {escape(str(event.get('time', '')))}  "
            f"{escape(str(event.get('from') or '-'))} -> "
            f"[bold]{escape(str(event.get('to', '')))}[/bold]  "
            f"(after {_seconds(event.get('duration_s'))})  {escape(str(event.get('message') or ''))}"
        )


def _print_alias(history: dict[str, Any]) -> None:
    alias = history.get("alias")
    if isinstance(alias, dict):
        say(
            f"alias [bold]{escape(str(alias.get('name')))}[/bold] -> "
            f"v{escape(str(alias.get('version')))} (release {alias.get('release_id')}) "
            f"at {escape(str(alias.get('route')))}"
        )
    moves = history.get("alias_moves") or []
    if moves:
        say("alias moves (newest first):")
    for move in moves:
        say(
            f"  {escape(str(move.get('time')))}  {escape(str(move.get('reason')))}: "
            f"{escape(str(move.get('from_version') or '-'))} -> "
            f"{escape(str(move.get('to_version') or '-'))}"
        )


def history(
    plugin: PluginArg,
    limit: Annotated[int, typer.Option("--limit", help="releases to show")] = 50,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    as_json: JsonOpt = False,
) -> None:
    """Show a plugin's deployments with their events, and its alias moves.

    Releases newest first, each with its status changes (time, from, to, time spent,
    message), duration and outcome; then the alias target and its moves (deploys,
    rollbacks, undeploys).
    """
    with connected(url, api_key, namespace, as_json) as client:
        plugin_id = str(resolve(client, plugin)["plugin_id"])
        answer = client.history(plugin_id, limit)
    if as_json:
        emit_json(answer)
        return
    releases = answer.get("deployments") or []
    if not releases:
        say(f"{escape(plugin_id)} was never deployed")
    for release in releases:
        _print_release(release)
    _print_alias(answer)


def _print_lines(lines: list[Any], as_json: bool) -> None:
    for line in lines:
        if not isinstance(line, dict):
            continue
        if as_json:
            emit_json(line)
        else:
            console.print(escape(strip_controls(format_log_line(line))), soft_wrap=True)
    console.file.flush()  # --follow: each line as it comes, even into a pipe


def _follow(
    client: AuthorClient, plugin_id: str, since: str | None, limit: int, as_json: bool
) -> None:
    """Print lines as they come: the server's event stream (opened again from the last line
    when the server ends it), or polling with next_since."""
    cursor = since
    while True:
        params: dict[str, Any] = {"follow": "true", "limit": limit}
        if cursor:
            params["since"] = cursor
        with client.stream(client.plugin_path(plugin_id, "/logs"), params) as response:
            if not response.headers.get("content-type", "").startswith(SSE_TYPE):
                response.read()
                first = decode_event(response.text) or {}
                break
            for data in sse_events(response.iter_lines()):
                event = decode_event(data)
                if event is not None:
                    _print_lines([event], as_json)
                    cursor = str(event.get("time") or "") or cursor
        # the server ended the stream (its lifetime bound): lines after the cursor only
        time.sleep(FOLLOW_POLL_S)
    _print_lines(list(first.get("lines") or []), as_json)
    cursor = first.get("next_since") or since
    while True:
        time.sleep(FOLLOW_POLL_S)
        page = client.logs(plugin_id, cursor, limit)
        _print_lines(list(page.get("lines") or []), as_json)
        cursor = page.get("next_since") or cursor


def logs(
    plugin: PluginArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="an ISO time, or an age such as 30s, 10m, 2h, 1d"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="lines at most (1..5000)")] = 200,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    as_json: JsonOpt = False,
) -> None:
    """Print the output of a plugin's replicas (stdout, stderr, logging records).

    Each line with its time, replica and stream; --follow keeps printing new lines.
    """
    with connected(url, api_key, namespace, as_json) as client:
        plugin_id = str(resolve(client, plugin)["plugin_id"])
        if follow:
            try:
                _follow(client, plugin_id, since, limit, as_json)
            except KeyboardInterrupt:
                return
            return
        answer = client.logs(plugin_id, since, limit)
    if as_json:
        emit_json(answer)
        return
    _print_lines(list(answer.get("lines") or []), False)
    if answer.get("truncated"):
        say(
            "[yellow](lines of this window are missing: past --limit or dropped by the cap)[/yellow]"
        )
