"""The options every server command takes, and how they resolve.

Each is a flag, else its environment variable (read by typer, like any option), else a
default: ``--url``/``PLUGHOST_URL`` (http://127.0.0.1:8080), ``--namespace``/
``PLUGHOST_NAMESPACE`` (ns_default), ``--api-key``/``PLUGHOST_API_KEY`` (else the local
server's admin-key file, ``$PLUGHOST_HOME/admin-key``, located by :class:`Settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plughost.cli.author.client import Target
from plughost.cli.author.errors import CliError
from plughost.config import Settings

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_NAMESPACE = "ns_default"

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="PLUGHOST_URL", help="server URL", show_envvar=True)
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="PLUGHOST_API_KEY",
        help="API key (default: the local server's admin-key file)",
        show_envvar=True,
        show_default=False,
    ),
]
NamespaceOpt = Annotated[
    str,
    typer.Option(
        "--namespace", "-n", envvar="PLUGHOST_NAMESPACE", help="namespace", show_envvar=True
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
SecretOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--secret",
        help="NAME=VALUE: an organization secret the plugin reads with container.secrets "
        "(repeatable)",
        show_default=False,
    ),
]
PluginArg = Annotated[str, typer.Argument(help="plugin_id, or a name (its newest version)")]


def admin_key_file(settings: Settings | None = None) -> Path:
    """Where the local server writes its first API key."""
    return (settings or Settings()).admin_key_path


def resolve_target(url: str, api_key: str | None, namespace: str) -> Target:
    """The target of a command; CliError when no key is given and no admin-key file exists."""
    if api_key:
        return Target(url=url, api_key=api_key, namespace=namespace)
    path = admin_key_file()
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(
            "no API key: pass --api-key, set PLUGHOST_API_KEY, or run the server locally "
            f"(it writes {path}; {exc.strerror})"
        ) from exc
    if not key:
        raise CliError(f"no API key: {path} is empty")
    return Target(url=url, api_key=key, namespace=namespace, key_source=str(path))
