"""The author's server commands on plugins: push, list, status, deploy, undeploy, delete,
rollback, infer."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from plughost.cli.author.client import AuthorClient, StreamFailed
from plughost.cli.author.errors import CliError
from plughost.cli.author.options import (
    DEFAULT_NAMESPACE,
    DEFAULT_URL,
    JsonOpt,
    KeyOpt,
    NamespaceOpt,
    PluginArg,
    SecretOpt,
    UrlOpt,
)
from plughost.cli.author.output import compact, console, emit_json, fail, say
from plughost.cli.author.packing import pack_folder, validated
from plughost.cli.author.resolve import parse_json_object, parse_secrets
from plughost.cli.author.session import (
    DEFAULT_WAIT_S,
    connected,
    json_final,
    report_final,
    resolve,
    wait_for,
)
from plughost.config import Settings
from plughost.domain.ids import route_prefix_for

WaitOpt = Annotated[bool, typer.Option("--wait", help="follow the rollout to its end")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="seconds --wait may take")]
STATUS_FIELDS = (
    "plugin_id",
    "name",
    "version",
    "status",
    "message",
    "deployed",
    "route_prefix",
    "alias_route",
    "estimated_completion_seconds",
    "queued_at",
    "deployed_at",
    "error",
)


def _local_manifest(path: Path) -> dict[str, Any]:
    """The folder's manifest, read by the server's intake run locally (a refused plugin
    stops here, before any upload)."""
    with validated(path, Settings()) as result:
        if not result.passed or result.manifest is None:
            raise CliError("validation failed", details=result.errors)
        return result.manifest


def _upload(client: AuthorClient, path: Path, name: str, version: str) -> dict[str, Any]:
    """Pack, ask for a presigned URL, PUT the archive, confirm; the confirm's answer."""
    data = pack_folder(path)
    upload = client.create_upload(name, version, len(data))
    etag = client.put_archive(str(upload["presigned_url"]), data)
    done = client.confirm_upload(str(upload["upload_id"]), etag, len(data))
    if not done.get("success") or done.get("validation_status") != "passed":
        errors = [str(e) for e in done.get("validation_errors") or []]
        raise CliError("the server refused the plugin", details=errors, payload=done)
    return done


def push(
    path: Annotated[Path, typer.Argument(help="the plugin folder")],
    version: Annotated[
        str | None, typer.Option("--version", help="version to upload (default: the manifest's)")
    ] = None,
    deploy: Annotated[bool, typer.Option("--deploy", help="deploy it once uploaded")] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="deploy and follow the rollout live to its end")
    ] = False,
    timeout: TimeoutOpt = DEFAULT_WAIT_S,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    secret: SecretOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a plugin folder; with --deploy and --wait, deploy it and follow the rollout.

    Checks the folder locally, packs it, uploads it through the presigned flow and confirms.
    --wait (implies --deploy) shows the phase, elapsed time and ETA live and ends with the
    route and a curl line, or with the plugin's error and its last log lines (exit 1).
    --secret NAME=VALUE stores the organization secret first (created, or its value
    replaced), so the deployment's first call already reads it through container.secrets.
    """
    secrets = parse_secrets(secret)
    with connected(url, api_key, namespace, as_json) as client:
        manifest = _local_manifest(path)
        for name, value in secrets.items():
            created = client.set_secret(name, value)
            if not as_json:
                say(f"{'stored' if created else 'updated'} secret [bold]{escape(name)}[/bold]")
        name = str(manifest.get("feature_extractor_name"))
        done = _upload(client, path, name, version or str(manifest.get("version")))
        plugin_id = str(done["plugin_id"])
        if not as_json:
            say(f"uploaded [bold]{escape(plugin_id)}[/bold] (validation passed)")
        result: dict[str, Any] = {"upload": done}
        if deploy or wait:
            result["deploy"] = client.deploy(plugin_id)
            if not as_json:
                say(f"deploying: {escape(str(result['deploy'].get('message') or ''))}")
        if wait:
            final = wait_for(client, plugin_id, as_json, timeout)
            example = manifest.get("example_input")
            if as_json:
                result["status"] = json_final(client, final)
            else:
                report_final(client, final, example if isinstance(example, dict) else None)
        if as_json:
            emit_json(result)


def list_plugins(
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    as_json: JsonOpt = False,
) -> None:
    """List the namespace's plugins."""
    with connected(url, api_key, namespace, as_json) as client:
        plugins = client.list_plugins()
    if as_json:
        emit_json(plugins)
        return
    table = Table("plugin_id", "name", "version", "deployed", "validation", "updated_at")
    for column in table.columns:
        column.overflow = "fold"
    for p in plugins:
        table.add_row(
            *(str(p.get(k, "")) for k in ("plugin_id", "name", "version")),
            "yes" if p.get("deployed") else "no",
            str(p.get("validation_status", "")),
            str(p.get("updated_at", "")),
        )
    console.print(table)


def _print_status(status: dict[str, Any]) -> None:
    for key in STATUS_FIELDS:
        if status.get(key) not in (None, ""):
            say(f"{key:>28}: {escape(str(status[key]))}")


def status(
    plugin: PluginArg,
    watch: Annotated[bool, typer.Option("--watch", help="follow it live to a final state")] = False,
    timeout: TimeoutOpt = DEFAULT_WAIT_S,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    as_json: JsonOpt = False,
) -> None:
    """Show a plugin's deployment status; --watch follows it to a final state.

    With --watch the exit code is 1 when the deployment ends failed.
    """
    with connected(url, api_key, namespace, as_json) as client:
        plugin_id = str(resolve(client, plugin)["plugin_id"])
        current = (
            wait_for(client, plugin_id, as_json, timeout) if watch else client.status(plugin_id)
        )
        if as_json:
            emit_json(current)
        else:
            _print_status(current)
        if watch and current.get("status") == "failed":
            raise CliError(f"{plugin_id} failed: {current.get('error') or current.get('message')}")


def deploy(
    plugin: PluginArg,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = DEFAULT_WAIT_S,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    as_json: JsonOpt = False,
) -> None:
    """Deploy the plugin (blue-green); with --wait, follow the rollout to its end."""
    with connected(url, api_key, namespace, as_json) as client:
        plugin_id = str(resolve(client, plugin)["plugin_id"])
        queued = client.deploy(plugin_id)
        if not wait:
            _print_answer(plugin_id, queued, as_json, str(queued.get("status")))
            return
        final = wait_for(client, plugin_id, as_json, timeout)
        if as_json:
            emit_json({"deploy": queued, "status": json_final(client, final)})
        else:
            report_final(client, final, client.example_input(plugin_id))


def undeploy(
    plugin: PluginArg,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    as_json: JsonOpt = False,
) -> None:
    """Take the plugin's realtime deployment down."""
    with connected(url, api_key, namespace, as_json) as client:
        plugin_id = str(resolve(client, plugin)["plugin_id"])
        answer = client.undeploy(plugin_id)
    _print_answer(plugin_id, answer, as_json, str(answer.get("status")))


def delete(
    plugin: PluginArg,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    as_json: JsonOpt = False,
) -> None:
    """Delete the plugin version (taking its deployment down first)."""
    with connected(url, api_key, namespace, as_json) as client:
        plugin_id = str(resolve(client, plugin)["plugin_id"])
        answer = client.delete(plugin_id)
    _print_answer(plugin_id, answer, as_json, "deleted")


def _print_answer(plugin_id: str, answer: dict[str, Any], as_json: bool, fallback: str) -> None:
    """The server's answer to a one-shot command: as JSON, or ``plugin_id: message``."""
    if as_json:
        emit_json(answer)
    else:
        say(f"{escape(plugin_id)}: {escape(str(answer.get('message') or fallback))}")


def rollback(
    name: Annotated[str, typer.Argument(help="plugin name")],
    version: Annotated[str, typer.Argument(help="an older deployed version")],
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    as_json: JsonOpt = False,
) -> None:
    """Point the name's alias at an older deployed version, at once."""
    with connected(url, api_key, namespace, as_json) as client:
        answer = client.rollback(name, version)
    if as_json:
        emit_json(answer)
        return
    say(
        f"{escape(name)}: alias moved from {escape(str(answer.get('previous_version')))} to "
        f"[bold]{escape(str(answer.get('active_version')))}[/bold]"
    )


def infer(
    plugin: PluginArg,
    input_json: Annotated[str, typer.Option("--input", help="inputs as JSON or @file")],
    params_json: Annotated[
        str | None, typer.Option("--params", help="parameters as JSON or @file")
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    as_json: JsonOpt = False,
) -> None:
    """Call the deployed plugin once; print its answer and the round trip's time. A
    streamed answer is printed item by item as it arrives, one JSON per line."""
    with connected(url, api_key, namespace, as_json) as client:
        inputs = parse_json_object(input_json, "--input") or {}
        params = parse_json_object(params_json, "--params") or {}
        plugin_id = str(resolve(client, plugin)["plugin_id"])
        began = time.perf_counter()
        route = route_prefix_for(namespace, plugin_id)
        with client.infer(route, {"inputs": inputs, "parameters": params}) as reply:
            if reply.items is not None:
                _print_stream(plugin_id, reply.items, began, as_json)
                return
            answer = reply.value
        elapsed_ms = (time.perf_counter() - began) * 1000
    if as_json:
        emit_json(answer)
        return
    say(f"{escape(plugin_id)} answered in [bold]{elapsed_ms:.1f} ms[/bold]:")
    say(escape(compact(answer)))


def _print_stream(plugin_id: str, items: Iterator[Any], began: float, as_json: bool) -> None:
    """Each item of a streamed answer on its own line as it arrives; an error line ends the
    command: printed on stderr, exit code 1."""
    count, first_ms = 0, 0.0
    try:
        for item in items:
            if count == 0:
                first_ms = (time.perf_counter() - began) * 1000
            count += 1
            typer.echo(json.dumps(item, default=str))  # echo flushes: the line shows now
    except StreamFailed as exc:
        typer.echo(exc.line, err=True)
        if as_json:
            raise typer.Exit(code=1) from None
        fail(exc, as_json=False)
    if not as_json:
        elapsed_ms = (time.perf_counter() - began) * 1000
        say(
            f"{escape(plugin_id)} streamed {count} item{'s' if count != 1 else ''} in "
            f"[bold]{elapsed_ms:.1f} ms[/bold] (first after {first_ms:.1f} ms)"
        )
