"""The author's local commands: ``init``, ``check``, ``test`` (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from plughost.archive import IntakeResult
from plughost.cli.author.errors import CliError
from plughost.cli.author.options import DEFAULT_NAMESPACE, JsonOpt, NamespaceOpt, SecretOpt
from plughost.cli.author.output import compact, emit_json, reporting, say
from plughost.cli.author.packing import validated
from plughost.cli.author.resolve import parse_json_object, parse_secrets
from plughost.cli.author.scaffold import STYLES, write_plugin
from plughost.config import Settings

PathArg = Annotated[Path, typer.Argument(help="the plugin folder")]


def init(
    name: Annotated[str, typer.Argument(help="plugin name (also the folder's)")],
    style: Annotated[
        str, typer.Option(help=f"manifest style: {' or '.join(STYLES)}")
    ] = "attributes",
    directory: Annotated[Path, typer.Option("--dir", help="where to create the folder")] = Path(
        "."
    ),
    as_json: JsonOpt = False,
) -> None:
    """Create a plugin folder that passes validation and deploys as it is.

    Writes manifest.py, pipeline.py, realtime.py, processors/, a README and a pytest test.
    """
    with reporting(as_json):
        folder = directory / name
        written = write_plugin(folder, name, style)
    files = [p.relative_to(folder).as_posix() for p in written]
    if as_json:
        emit_json({"path": str(folder), "name": name, "style": style, "files": files})
        return
    say(f"created plugin [bold]{escape(name)}[/bold] in {escape(str(folder))}/")
    for rel in files:
        say(f"  {escape(rel)}")
    say(f"next: plughost check {escape(str(folder))} && plughost test {escape(str(folder))}")


def _summary(result: IntakeResult) -> dict[str, Any]:
    manifest = result.manifest or {}
    return {
        "passed": result.passed,
        "errors": result.errors,
        "name": manifest.get("feature_extractor_name"),
        "version": manifest.get("version"),
        "has_realtime": result.has_realtime,
        "code_hash": result.code_hash,
        "serve_config": manifest.get("serve_config"),
    }


def check(path: PathArg, as_json: JsonOpt = False) -> None:
    """Validate a plugin folder exactly as the server does on upload (no server needed).

    Packs the folder as push would and runs the server's intake on it: safe extraction,
    layout, the security scan (findings as file:line:col message) and the manifest read in
    a child process. Same messages as the server; exit 1 when it would be refused.
    """
    with reporting(as_json):
        with validated(path, Settings()) as result:
            summary = _summary(result)
        if not result.passed:
            raise CliError(
                "validation failed", details=result.errors, payload={"success": False, **summary}
            )
    if as_json:
        emit_json({"success": True, **summary})
        return
    realtime = "with realtime.py" if result.has_realtime else "batch only (no realtime.py)"
    say(
        f"[green]passed[/green] {escape(str(summary['name']))} {escape(str(summary['version']))}"
        f", {realtime}, code hash {str(summary['code_hash'])[:12]}"
    )


def test(
    path: PathArg,
    input_json: Annotated[
        str | None,
        typer.Option("--input", help="inputs as JSON or @file (default: example_input)"),
    ] = None,
    params_json: Annotated[
        str | None, typer.Option("--params", help="parameters as JSON or @file")
    ] = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    secret: SecretOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run realtime.py in a local replica, call it once, print the answer and its time.

    The replica is started exactly as the server starts one (same worker, loader and
    sandbox, the manifest's dependencies included); --input defaults to the manifest's
    example_input; --secret NAME=VALUE are what container.secrets answers.
    """
    with reporting(as_json):
        inputs = parse_json_object(input_json, "--input")
        params = parse_json_object(params_json, "--params") or {}
        secrets = parse_secrets(secret)
        from plughost.cli.author.localrun import run_local  # backends and sandbox: only here

        answer = run_local(path, inputs, params, namespace, secrets)
    if as_json:
        emit_json(
            {
                "result": answer.result,
                "call_ms": round(answer.call_s * 1000, 3),
                "start_ms": round(answer.start_s * 1000, 3),
                "sandbox": answer.sandbox_layers,
            }
        )
        return
    layers = [k for k, on in answer.sandbox_layers.items() if on]
    say(
        f"replica started in {answer.start_s * 1000:.0f} ms (sandbox: {', '.join(layers) or 'off'})"
    )
    say(f"answered in [bold]{answer.call_s * 1000:.2f} ms[/bold]:")
    say(escape(compact(answer.result)))
