"""``plughost models``: a namespace's model weights on a running server (upload, list,
preload, delete), over the same HTTP routes as the SDK's ``CustomModelsApi``.

Like ``plughost batch``, these commands take ``--url``, ``--api-key`` and ``--namespace``
(and their environment variables). A folder given to ``upload`` is packed into a .tar.gz
first; the archive streams from disk, never whole in memory."""

from __future__ import annotations

import json
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
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

models_app = typer.Typer(
    help="Namespace models: weights uploaded once, loaded by plugins with "
    "load_namespace_model(model_id).",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

FORMATS = ("safetensors", "onnx", "pytorch", "huggingface")
# an upload of several GiB takes minutes; only the connection has to be quick
UPLOAD_TIMEOUT = httpx.Timeout(3600.0, connect=10.0)
ModelArg = Annotated[str, typer.Argument(help="the model id, e.g. tiny_weights_1_0_0")]




def _send(call: Any) -> dict[str, Any]:
    try:
        return checked(call())
    except httpx.HTTPError as exc:
        err_console.print(f"[red]error:[/red] cannot reach the server: {exc}")
        raise typer.Exit(code=1) from exc


@contextmanager
def _archive(path: Path) -> Iterator[Path]:
    """``path`` itself when it is a file; a folder packed into a temporary .tar.gz whose
    members are the folder's contents (no top folder; a symbolic link is refused)."""
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise typer.BadParameter(f"{path} is neither a file nor a folder")
    links = [p for p in path.rglob("*") if p.is_symlink()]
    if links:  # the server refuses links in an archive: say which before packing
        raise typer.BadParameter(f"{links[0]} is a symbolic link: copy the file it points to")
    with tempfile.TemporaryDirectory(prefix="plughost-model-") as tmp:
        packed = Path(tmp) / f"{path.name or 'model'}.tar.gz"
        with tarfile.open(packed, "w:gz") as tar:
            for child in sorted(path.iterdir()):
                tar.add(child, arcname=child.name)
        yield packed


@models_app.command("upload")
def upload(
    path: Annotated[Path, typer.Argument(help="a .tar.gz (or .zip) of the model, or a folder")],
    name: Annotated[str, typer.Option(help="the model's name (letters, digits, _)")],
    version: Annotated[str, typer.Option(help="its version, e.g. 1.0.0")],
    model_format: Annotated[
        str, typer.Option("--format", help="safetensors | onnx | pytorch | huggingface")
    ],
    framework: Annotated[str | None, typer.Option(help="e.g. pytorch, transformers")] = None,
    task_type: Annotated[str | None, typer.Option(help="e.g. text_embedding")] = None,
    num_cpus: Annotated[float | None, typer.Option(help="CPUs a replica needs")] = None,
    num_gpus: Annotated[int | None, typer.Option(help="GPUs a replica needs")] = None,
    memory_gb: Annotated[float | None, typer.Option(help="memory a replica needs")] = None,
    deploy: Annotated[bool, typer.Option("--deploy", help="preload it after the upload")] = False,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload model weights to the namespace; plugins load them by the printed model id."""
    if model_format not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    fields = {"name": name, "version": version, "model_format": model_format}
    extra = {
        "framework": framework, "task_type": task_type, "num_cpus": num_cpus,
        "num_gpus": num_gpus, "memory_gb": memory_gb,
    }
    fields.update({k: str(v) for k, v in extra.items() if v is not None})
    with (
        _archive(path) as archive,
        archive.open("rb") as stream,
        open_client(url, key, UPLOAD_TIMEOUT) as client,
    ):
        body = _send(
            lambda: client.post(
                f"/v1/namespaces/{namespace}/models",
                data=fields,
                files={"file": (archive.name, stream, "application/octet-stream")},
            )
        )
        if deploy:
            model_id = body["model_id"]
            body["deploy"] = _send(
                lambda: client.post(f"/v1/namespaces/{namespace}/models/{model_id}/deploy")
            )
    if as_json:
        typer.echo(json.dumps(body))
        return
    console.print(f"uploaded model [bold]{body['model_id']}[/bold] to {namespace}")
    if deploy:
        console.print(f"preloaded: {body['deploy'].get('message', '')}")


@models_app.command("list")
def list_models(
    available: Annotated[
        bool, typer.Option("--available", help="the organization's models, and which are here")
    ] = False,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the namespace's models (or, with --available, the organization's)."""
    path = f"/v1/namespaces/{namespace}/models" + ("/available" if available else "")
    with open_client(url, key, 60.0) as client:
        body = _send(lambda: client.get(path))
    if as_json:
        typer.echo(json.dumps(body))
        return
    models = body.get("models") or []
    if not models:
        console.print(f"no models in {namespace}")
        return
    last = "here" if available else "preloaded"
    table = Table("model_id", "format", "framework", "task", last)
    for m in models:
        flag = m.get("enabled_in_namespace") if available else m.get("deployed")
        table.add_row(
            m["model_id"], m["model_format"], m.get("framework") or "",
            m.get("task_type") or "", "yes" if flag else "no",
        )
    console.print(table)


@models_app.command("deploy")
def deploy_model(
    model_id: ModelArg,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Preload a model, so the next replica that loads it finds its files in memory."""
    with open_client(url, key, UPLOAD_TIMEOUT) as client:
        body = _send(lambda: client.post(f"/v1/namespaces/{namespace}/models/{model_id}/deploy"))
    if as_json:
        typer.echo(json.dumps(body))
        return
    console.print(body.get("message") or f"{model_id}: {body.get('deployment_status')}")


@models_app.command("delete")
def delete_model(
    model_id: ModelArg,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a model of the namespace (refused while a deployed plugin uses it)."""
    with open_client(url, key, 60.0) as client:
        body = _send(lambda: client.delete(f"/v1/namespaces/{namespace}/models/{model_id}"))
    if as_json:
        typer.echo(json.dumps(body))
        return
    console.print(f"deleted model [bold]{model_id}[/bold] from {namespace}")
