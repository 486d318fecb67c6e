"""``plughost batch``: run a plugin's pipeline over a file on a running server, and manage jobs.

These commands talk to the server over HTTP (the jobs run there): ``--url`` (default
``http://127.0.0.1:8080``), ``--api-key`` and ``--namespace``, the same options (and
environment variables) as every other server command.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from plughost.cli.author.options import (
    DEFAULT_NAMESPACE,
    DEFAULT_URL,
    JsonOpt,
    KeyOpt,
    UrlOpt,
)
from plughost.cli.author.options import NamespaceOpt as NsOpt
from plughost.cli.http import checked, open_client

batch_app = typer.Typer(
    help="Batch jobs: a plugin's pipeline.py over a data set.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)
FINAL = ("completed", "failed", "cancelled")




def _parameters(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--parameters is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("--parameters must be a JSON object")
    return raw


def _follow(client: httpx.Client, endpoint: str, interval: float) -> dict[str, Any]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("queued", total=None, rate="")
        while True:
            body = checked(client.get(endpoint))
            rate = body.get("rows_per_second")
            progress.update(
                task,
                description=body["status"],
                total=body.get("rows_total"),
                completed=body.get("rows_done") or 0,
                rate=f"{rate:.0f} rows/s" if rate else "",
            )
            if body["status"] in FINAL:
                return body
            time.sleep(interval)


def _download(url: str, target: Path) -> None:
    with httpx.stream("GET", url, timeout=300) as response:
        if response.status_code != 200:
            err_console.print(f"[red]error:[/red] output download answered {response.status_code}")
            raise typer.Exit(code=1)
        with target.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)


@batch_app.command("run")
def run(
    plugin: Annotated[str, typer.Argument(help="plugin id, e.g. hash_embedder_1_0_0")],
    input_file: Annotated[
        Path, typer.Argument(help="JSONL, CSV or Parquet file", exists=True, dir_okay=False)
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="where to write the Parquet output")
    ],
    parameters: Annotated[str | None, typer.Option(help="JSON object for the pipeline")] = None,
    on_error: Annotated[str, typer.Option(help="fail | skip")] = "fail",
    namespace: NsOpt = DEFAULT_NAMESPACE,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    interval: Annotated[float, typer.Option(help="seconds between status polls")] = 0.5,
) -> None:
    """Upload INPUT, run the plugin's pipeline over it with a progress bar, save the output."""
    data = {"on_error": on_error}
    if (params := _parameters(parameters)) is not None:
        data["parameters"] = params
    with open_client(url, key, 120) as client, input_file.open("rb") as src:
        submitted = checked(
            client.post(
                f"/v1/namespaces/{namespace}/plugins/{plugin}/batches",
                files={"file": (input_file.name, src, "application/octet-stream")},
                data=data,
            )
        )
        err_console.print(f"batch [bold]{submitted['batch_id']}[/bold] queued")
        try:
            body = _follow(client, submitted["status_endpoint"], interval)
        except KeyboardInterrupt:
            client.delete(submitted["status_endpoint"])
            err_console.print("cancelled")
            raise typer.Exit(code=130) from None
    for error in body.get("errors") or []:
        err_console.print(
            f"[yellow]rows {error.get('first_row')}-{error.get('last_row')}:[/yellow] {error.get('message')}"
        )
    if body["status"] != "completed":
        err_console.print(f"[red]{body['status']}:[/red] {body.get('message')}")
        raise typer.Exit(code=1)
    _download(body["output_url"], output)
    console.print(f"wrote {output} ({body['rows_done']} rows in, {body['rows_failed']} failed)")


@batch_app.command("status")
def status(
    batch_id: Annotated[str, typer.Argument(help="batch id")],
    namespace: NsOpt = DEFAULT_NAMESPACE,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one job."""
    with open_client(url, key, 120) as client:
        body = checked(client.get(f"/v1/namespaces/{namespace}/batches/{batch_id}"))
    if as_json:
        typer.echo(json.dumps(body))
        return
    for field in (
        "batch_id",
        "plugin_id",
        "status",
        "rows_total",
        "rows_done",
        "rows_failed",
        "rows_per_second",
        "estimated_completion_seconds",
        "message",
        "output_url",
    ):
        console.print(f"[bold]{field}[/bold]: {body.get(field)}")


@batch_app.command("cancel")
def cancel(
    batch_id: Annotated[str, typer.Argument(help="batch id")],
    namespace: NsOpt = DEFAULT_NAMESPACE,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """Cancel a queued or running job."""
    with open_client(url, key, 120) as client:
        body = checked(client.delete(f"/v1/namespaces/{namespace}/batches/{batch_id}"))
    console.print(f"{body['batch_id']}: {body['status']}")


@batch_app.command("list")
def list_batches(
    plugin: Annotated[str | None, typer.Option(help="only this plugin id")] = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the namespace's jobs, newest first."""
    path = (
        f"/v1/namespaces/{namespace}/plugins/{plugin}/batches"
        if plugin
        else f"/v1/namespaces/{namespace}/batches"
    )
    with open_client(url, key, 120) as client:
        body = checked(client.get(path))
    if as_json:
        typer.echo(json.dumps(body["batches"]))
        return
    table = Table("batch_id", "plugin_id", "status", "rows", "failed", "created_at")
    for job in body["batches"]:
        table.add_row(
            job["batch_id"],
            job["plugin_id"],
            job["status"],
            f"{job['rows_done']}/{job['rows_total'] or '?'}",
            str(job["rows_failed"]),
            str(job["created_at"]),
        )
    console.print(table)
