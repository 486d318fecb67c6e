"""The `plughost` command: the server and the admin commands (which talk to the database)."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from plughost.config import Settings
from plughost.errors import PlughostError
from plughost.persistence.db import Database
from plughost.services.accounts import DEFAULT_ORG, Accounts

app = typer.Typer(help="plughost: self-hosted custom ML plugins.", no_args_is_help=True)
namespaces_app = typer.Typer(help="Manage namespaces.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
orgs_app = typer.Typer(help="Manage organizations.", no_args_is_help=True)
app.add_typer(namespaces_app, name="namespaces")
app.add_typer(orgs_app, name="orgs")
app.add_typer(keys_app, name="keys")
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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8080,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Run the server on the configured (by default embedded) database and store."""
    import uvicorn

    from plughost.api.app import create_app

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings(host=host, port=port)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False)


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
    app()
