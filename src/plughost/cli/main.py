"""The `plughost` command: the server and the admin commands (which talk to the database)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from plughost.cli.author import register as register_author_commands
from plughost.cli.batch import batch_app
from plughost.cli.models import models_app
from plughost.cli.policies import policy_app
from plughost.cli.secrets import secrets_app
from plughost.cli.serve import serve
from plughost.config import Settings
from plughost.errors import PlughostError
from plughost.persistence.db import Database
from plughost.services.accounts import DEFAULT_ORG, Accounts

app = typer.Typer(help="plughost: self-hosted custom ML plugins.", no_args_is_help=True)
namespaces_app = typer.Typer(help="Manage namespaces.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
orgs_app = typer.Typer(help="Manage organizations.", no_args_is_help=True)
app.add_typer(namespaces_app, name="namespaces")
namespaces_app.add_typer(policy_app, name="policy")
app.add_typer(orgs_app, name="orgs")
app.add_typer(keys_app, name="keys")
app.add_typer(batch_app, name="batch")
app.add_typer(secrets_app, name="secrets")
app.add_typer(models_app, name="models")
register_author_commands(app)
console = Console()
err_console = Console(stderr=True)


def _accounts() -> Accounts:
    settings = Settings()
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    db.migrate()
    accounts = Accounts(db)
    accounts.bootstrap(settings.bootstrap_key)
    return accounts


def _fail(exc: PlughostError) -> None:
    err_console.print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(code=1)


app.command()(serve)


@app.command()
def restart(
    port: Annotated[int, typer.Option(help="the running server's port")] = 8080,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the new process")] = 300,
) -> None:
    """Restart the server running on this home and port without downtime: it starts a new
    process with its own arguments, which takes over (the same as SIGHUP)."""
    import time

    from plughost.server.handover import ask

    settings = Settings(port=port)
    try:
        old = ask(settings, {"op": "restart"})
    except (ConnectionError, OSError) as exc:
        typer.echo(f"error: {exc} (home {settings.resolved_home}, port {port})", err=True)
        raise typer.Exit(code=1) from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            now = ask(settings, {"op": "hello"})
        except (ConnectionError, OSError, ValueError):
            continue
        if now["pid"] != old["pid"] and now["state"] == "serving":
            typer.echo(f"restarted: pid {old['pid']} handed over to pid {now['pid']}")
            return
    typer.echo(f"error: no new server took over within {timeout:g} s", err=True)
    raise typer.Exit(code=1)


@namespaces_app.command("create")
def namespaces_create(
    name: Annotated[str, typer.Argument(help="display name")],
    namespace_id: Annotated[
        str | None, typer.Option("--id", help="namespace id (default: generated)")
    ] = None,
    org: Annotated[str, typer.Option(help="organization id")] = DEFAULT_ORG,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create a namespace."""
    try:
        record = _accounts().create_namespace(name, org_id=org, namespace_id=namespace_id)
    except PlughostError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(record))
    else:
        console.print(f"created namespace [bold]{record['namespace_id']}[/bold] ({name})")


@namespaces_app.command("list")
def namespaces_list(
    org: Annotated[str | None, typer.Option(help="only this organization")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List namespaces."""
    rows = _accounts().list_namespaces(org)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("namespace_id", "name", "organization_id", "created_at")
    for r in rows:
        table.add_row(r["namespace_id"], r["name"], r["organization_id"], r["created_at"])
    console.print(table)


@orgs_app.command("create")
def orgs_create(
    org_id: Annotated[str, typer.Argument(help="organization id")],
    name: Annotated[str, typer.Option(help="display name")] = "",
) -> None:
    """Create an organization (keys and namespaces belong to one)."""
    try:
        _accounts().create_organization(org_id, name)
    except PlughostError as exc:
        _fail(exc)
    console.print(f"created organization [bold]{org_id}[/bold]")


@keys_app.command("create")
def keys_create(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="limit the key to this namespace (repeatable)"),
    ] = None,
    org: Annotated[str, typer.Option(help="organization id")] = DEFAULT_ORG,
    label: Annotated[str, typer.Option(help="a note to recognise the key")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create an API key; the key itself is shown once."""
    try:
        key, record = _accounts().create_key(org, namespace or None, label)
    except PlughostError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps({"key": key, **record}))
    else:
        console.print(f"key id {record['key_id']}; the key (shown once):")
        typer.echo(key)


@keys_app.command("list")
def keys_list(
    org: Annotated[str | None, typer.Option(help="only this organization")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List API keys (never their secret)."""
    rows = _accounts().list_keys(org)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("key_id", "prefix", "organization_id", "namespaces", "label", "revoked_at")
    for r in rows:
        table.add_row(
            r["key_id"],
            r["prefix"],
            r["organization_id"],
            ",".join(r["namespaces"]) if r["namespaces"] else "*",
            r["label"],
            r["revoked_at"] or "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key id (see keys list)")]) -> None:
    """Revoke an API key at once."""
    try:
        _accounts().revoke_key(key_id)
    except PlughostError as exc:
        _fail(exc)
    console.print(f"revoked {key_id}")


def main() -> None:
    """The whole command (``plughost.cli.entry`` runs ``serve`` without importing this)."""
    app()
