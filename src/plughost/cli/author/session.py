"""What the server commands share: connecting, resolving PLUGIN, waiting for a rollout and
reporting its end (the route and a curl line, or the plugin's error and its last logs)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.markup import escape

from plughost.cli.author.client import AuthorClient, Target
from plughost.cli.author.errors import CliError
from plughost.cli.author.follow import LiveStatus, follow_status
from plughost.cli.author.options import resolve_target
from plughost.cli.author.output import err_console, reporting, say
from plughost.cli.author.resolve import resolve_plugin

FAILURE_LOG_LINES = 20
DEFAULT_WAIT_S = 600.0


@contextmanager
def connected(
    url: str, api_key: str | None, namespace: str, as_json: bool
) -> Iterator[AuthorClient]:
    """A client for the command's target; any CliError in the block ends the command."""
    with reporting(as_json), AuthorClient(resolve_target(url, api_key, namespace)) as client:
        yield client


def resolve(client: AuthorClient, ref: str) -> dict[str, Any]:
    """The listed plugin PLUGIN names (a plugin_id, or a name's newest version)."""
    return dict(resolve_plugin(client.list_plugins(), ref))


def wait_for(
    client: AuthorClient, plugin_id: str, as_json: bool, timeout_s: float = DEFAULT_WAIT_S
) -> dict[str, Any]:
    """Follow the plugin's status to a final state (live display unless ``as_json``)."""
    if as_json:
        return follow_status(client, plugin_id, lambda _status: None, timeout_s)
    with LiveStatus(err_console, plugin_id) as live:
        return follow_status(client, plugin_id, live, timeout_s)


def curl_line(target: Target, route_prefix: str, inputs: dict[str, Any]) -> str:
    """A ready-to-paste curl call of ``route_prefix`` that does not print the key."""
    key = (
        "$PLUGHOST_API_KEY"
        if target.key_source == "--api-key"
        else f"$(cat {shlex.quote(target.key_source)})"
    )
    body = json.dumps({"inputs": inputs, "parameters": {}})
    return (
        f"curl -s -H \"Authorization: Bearer {key}\" -H 'Content-Type: application/json' "
        f"-d {shlex.quote(body)} {target.url.rstrip('/')}{route_prefix}"
    )


def recent_logs(client: AuthorClient, plugin_id: str, limit: int = FAILURE_LOG_LINES) -> list[str]:
    """The plugin's last log lines, formatted; empty when the server keeps none."""
    try:
        lines = client.logs(plugin_id, None, limit).get("lines") or []
    except CliError:
        return []
    return [format_log_line(line) for line in lines[-limit:] if isinstance(line, dict)]


def format_log_line(line: dict[str, Any]) -> str:
    """``time replica stream | line``."""
    where = "/".join(str(line[k]) for k in ("replica", "stream") if line.get(k) not in (None, ""))
    return f"{line.get('time', '')} {where} | {line.get('line', '')}".strip()


def report_final(
    client: AuthorClient, final: dict[str, Any], inputs: dict[str, Any] | None
) -> None:
    """For people: the route and a curl line when deployed; CliError (the plugin's error and
    its last log lines) otherwise."""
    status = str(final.get("status"))
    plugin_id = str(final.get("plugin_id"))
    if status != "deployed":
        text = str(final.get("error") or final.get("message") or status)
        message, _, carried = text.partition("\n")
        if carried.strip():  # the server's error already carries the last log lines
            details = carried.splitlines()
        else:
            logs = recent_logs(client, plugin_id)
            details = ["last log lines:", *logs] if logs else []
        raise CliError(f"{plugin_id} {status}: {message}", details=details, payload=final)
    route = str(final.get("route_prefix") or "")
    say(f"[green]deployed[/green] {escape(plugin_id)} at {escape(route)}")
    say(escape(curl_line(client.target, route, inputs or {})))


def json_final(client: AuthorClient, final: dict[str, Any]) -> dict[str, Any]:
    """For scripts: the final status; CliError(payload=the status plus logs) unless deployed."""
    if final.get("status") == "deployed":
        return final
    plugin_id = str(final.get("plugin_id"))
    payload = {**final, "log_lines": recent_logs(client, plugin_id)}
    message = final.get("error") or final.get("message") or final.get("status")
    raise CliError(f"{plugin_id} {final.get('status')}: {message}", payload=payload)
