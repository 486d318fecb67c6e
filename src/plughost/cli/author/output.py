"""Printing for the author's commands: people get rich text on the terminal, scripts get
one JSON document on stdout (``--json``); failures exit with code 1 either way. Text for
people never carries terminal control (a plugin's error or message may hold some): it is
stripped before printing (:func:`plughost.logs.terminal.strip_controls`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from plughost.cli.author.errors import CliError
from plughost.logs.terminal import strip_controls

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(value, indent=None, default=str))


def fail(exc: CliError, as_json: bool) -> NoReturn:
    """Report ``exc`` (message and detail lines on stderr; JSON on stdout too) and exit 1."""
    message = strip_controls(exc.message, newlines=True)
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    for line in exc.details:
        err_console.print(f"  {escape(strip_controls(line, newlines=True))}", soft_wrap=True)
    if as_json:
        emit_json(
            exc.payload
            or {
                "success": False,
                "error": {"message": exc.message, "type": exc.error_type or "Error"},
                "details": exc.details,
            }
        )
    raise typer.Exit(code=1)


@contextmanager
def reporting(as_json: bool) -> Iterator[None]:
    """Run a command body; a CliError ends it through :func:`fail`."""
    try:
        yield
    except CliError as exc:
        fail(exc, as_json)


def say(text: str) -> None:
    """A line for people (rich markup allowed; callers escape what they did not write)."""
    console.print(strip_controls(text, newlines=True), soft_wrap=True)


def compact(value: Any, limit: int = 2000) -> str:
    """JSON of ``value`` on one line, cut to ``limit`` characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
