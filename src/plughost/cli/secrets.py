"""`plughost secrets set/list/delete`: an organization's secrets, straight in the database
(as the other admin commands), sealed with the server's key (:mod:`plughost.services.secret_box`).

A running server masks a changed value in its replicas' logs within its mask's refresh
interval, and always before it hands the value to plugin code."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from plughost.config import Settings
from plughost.errors import PlughostError
from plughost.persistence.db import Database
from plughost.services.accounts import DEFAULT_ORG
from plughost.services.secret_box import open_secret_box
from plughost.services.secrets import Secrets

secrets_app = typer.Typer(help="Manage organization secrets.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

OrgOpt = Annotated[str, typer.Option(help="organization id")]


def _secrets() -> Secrets:
    settings = Settings()
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    db.migrate()
    return Secrets(db, open_secret_box(settings, db))


def _fail(exc: PlughostError | ValueError) -> None:
    message = exc.message if isinstance(exc, PlughostError) else str(exc)
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=1)


def _read_value(value: str | None) -> str:
    """The value: ``--value``, else typed at a hidden prompt, else stdin (one trailing
    newline dropped), so it need not appear in the shell's history."""
    if value is not None:
        return value
    if sys.stdin.isatty():
        return str(typer.prompt("secret value", hide_input=True))
    return sys.stdin.read().removesuffix("\n")


@secrets_app.command("set")
def secrets_set(
    name: Annotated[str, typer.Argument(help="the secret's name")],
    value: Annotated[
        str | None,
        typer.Option(help="the value (default: a hidden prompt, or stdin when piped)"),
    ] = None,
    org: OrgOpt = DEFAULT_ORG,
) -> None:
    """Create or replace a secret of the organization."""
    try:
        created = _secrets().put(org, name, _read_value(value))
    except (PlughostError, ValueError) as exc:
        _fail(exc)
        return
    console.print(f"{'created' if created else 'updated'} secret [bold]{name}[/bold] of {org}")


@secrets_app.command("list")
def secrets_list(
    org: OrgOpt = DEFAULT_ORG,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the organization's secret names (never their values)."""
    try:
        names = _secrets().names(org)
    except (PlughostError, ValueError) as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps({"secrets": names, "count": len(names)}))
        return
    for name in names:
        typer.echo(name)


@secrets_app.command("delete")
def secrets_delete(
    name: Annotated[str, typer.Argument(help="the secret's name")],
    org: OrgOpt = DEFAULT_ORG,
) -> None:
    """Delete a secret of the organization."""
    try:
        _secrets().remove(org, name)
    except (PlughostError, ValueError) as exc:
        _fail(exc)
        return
    console.print(f"deleted secret [bold]{name}[/bold] of {org}")
