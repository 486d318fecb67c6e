"""The `plughost` console script.

``plughost serve`` is dispatched before the full command line is built: the server's start
(and the memory every server process keeps) then holds only what the server needs, not the
client commands' HTTP client, rich tables and author tools. Every other command, ``--help``
included, goes through ``plughost.cli.main``."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["serve"]:
        import typer

        from plughost.cli.serve import serve

        alone = typer.Typer(add_completion=False)
        alone.command()(serve)
        alone(args=args[1:], prog_name="plughost serve")
        return
    from plughost.cli.main import main as full

    full()
