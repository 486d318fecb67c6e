"""`plughost namespaces policy show/set`: a namespace's quotas and egress allowlist, straight
in the database (as the other admin commands). A running server applies a change within
``PLUGHOST_QUOTA_REFRESH_S`` (plughost.services.policies)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from plughost.config import Settings
from plughost.domain.quotas import FIELDS, NamespacePolicy, check_fields
from plughost.errors import PlughostError
from plughost.persistence.db import Database
from plughost.persistence.policies import PolicyRows

policy_app = typer.Typer(
    help="Show or set a namespace's quotas and egress allowlist.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

NsArg = Annotated[str, typer.Argument(help="namespace id")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _rows() -> PolicyRows:
    settings = Settings()
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    db.migrate()
    return PolicyRows(db)


def _fail(exc: PlughostError) -> None:
    err_console.print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(code=1)


def _print(policy: NamespacePolicy, as_json: bool) -> None:
    record = policy.to_json()
    if as_json:
        typer.echo(json.dumps(record))
        return
    for name in FIELDS:
        value = record[name]
        if name == "egress_allow":
            shown = ", ".join(value) if value else "(none: no network)"
        else:
            shown = "no limit" if value is None else f"{value:g}"
        console.print(f"{name:<24} {shown}", markup=False, highlight=False)


@policy_app.command("show")
def policy_show(namespace: NsArg, as_json: JsonOpt = False) -> None:
    """Show a namespace's policy."""
    try:
        policy = _rows().get(namespace)
    except PlughostError as exc:
        _fail(exc)
        return
    _print(policy, as_json)


@policy_app.command("set")
def policy_set(
    namespace: NsArg,
    max_replicas: Annotated[int | None, typer.Option(help="replicas of its deployments")] = None,
    max_memory_mb: Annotated[
        int | None, typer.Option(help="memory of its deployments' replicas (MB)")
    ] = None,
    max_batch_jobs: Annotated[
        int | None, typer.Option(help="batch jobs queued or running at once")
    ] = None,
    rps: Annotated[
        float | None, typer.Option("--rps", help="realtime calls per second, the namespace")
    ] = None,
    key_rps: Annotated[
        float | None, typer.Option("--key-rps", help="realtime calls per second, each API key")
    ] = None,
    egress_allow: Annotated[
        list[str] | None,
        typer.Option(
            "--egress-allow", help="host[:port] plugins may reach (repeatable; replaces the list)"
        ),
    ] = None,
    clear: Annotated[
        list[str] | None,
        typer.Option("--clear", help="remove this limit (a field name; repeatable)"),
    ] = None,
    clear_egress: Annotated[
        bool, typer.Option("--clear-egress", help="no egress allowlist (no network)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change a namespace's policy: the options given, the others kept."""
    raw: dict[str, Any] = {
        name: value
        for name, value in (
            ("max_replicas", max_replicas),
            ("max_memory_mb", max_memory_mb),
            ("max_batch_jobs", max_batch_jobs),
            ("requests_per_second", rps),
            ("key_requests_per_second", key_rps),
        )
        if value is not None
    }
    if egress_allow:
        raw["egress_allow"] = list(egress_allow)
    for name in clear or ():
        raw[name.replace("-", "_")] = None
    if clear_egress:
        raw["egress_allow"] = None
    if not raw:
        err_console.print("[red]error:[/red] nothing to set (see --help)")
        raise typer.Exit(code=2)
    try:
        policy = _rows().put(namespace, check_fields(raw))
    except PlughostError as exc:
        _fail(exc)
        return
    _print(policy, as_json)
