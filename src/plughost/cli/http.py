"""The HTTP side the server-talking sub-commands (`batch`, `models`) share: a client with the
resolved key, and a response check that prints the server's message."""

from __future__ import annotations

from typing import Any

import httpx
import typer
from rich.console import Console

from plughost.cli.author.errors import CliError
from plughost.cli.author.options import DEFAULT_NAMESPACE, resolve_target

err_console = Console(stderr=True)


def open_client(url: str, key: str | None, timeout: httpx.Timeout | float) -> httpx.Client:
    """A client authorized with the key (flag, env or saved); no key exits 2."""
    try:
        target = resolve_target(url, key, DEFAULT_NAMESPACE)
    except CliError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {target.api_key}"}, timeout=timeout
    )


def checked(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a success; an error prints the server's message and exits 1."""
    try:
        body = response.json()
    except ValueError:
        body = {"error": {"message": response.text}}
    if response.status_code >= 400:
        error = (body.get("error") if isinstance(body, dict) else None) or {}
        err_console.print(f"[red]error {response.status_code}:[/red] {error.get('message', body)}")
        raise typer.Exit(code=1)
    return dict(body)
