"""`plughost serve`: kept apart from the other commands, so that starting the server does not
import what only they need (rich tables, the HTTP client, the author tools); see
``plughost.cli.entry``."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from plughost.config import Settings


def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8080,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
    workers: Annotated[
        int | None,
        typer.Option(help="server processes sharing the port (PLUGHOST_WORKERS, default 1)"),
    ] = None,
) -> None:
    """Run the server on the configured (by default embedded) database and store.

    A server already running on the same home and port is taken over without downtime
    (plughost.server.handover); SIGHUP or `plughost restart` makes a running server do that to
    itself."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings(host=host, port=port)
    from plughost.server.fdlimit import raise_open_file_limit

    raise_open_file_limit(settings.streams_max_open)  # each event stream holds a socket
    if settings.fd_check:  # before the server's modules: uvloop binds os.close at its import
        from plughost.server import fdcheck

        fdcheck.install()
    # light modules only until the migration's child is started: the server's own modules
    # are imported while it runs
    from plughost.persistence.db import begin_migration
    from plughost.sandbox.host import config_from_settings
    from plughost.sandbox.probe import begin_probe
    from plughost.server import port_keeper as keeper
    from plughost.server import takeover
    from plughost.server.handover import ask_predecessor
    from plughost.server.home_lock import lock_sqlite_home

    if workers is not None:
        settings.workers = workers
    if settings.workers > 1:  # no takeover: each worker would need its own (plughost.server.supervisor)
        from plughost.server.supervisor import run_parent

        try:
            code = run_parent(settings, log_level)
        except RuntimeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
        raise typer.Exit(code=code)
    handoff = None
    try:
        handoff = ask_predecessor(settings)
        lock_sqlite_home(settings)
        # a server that died left its port with the keeper: take it (its queued connections)
        kept = None if handoff else keeper.take(settings)
        # fail here, before migrations, when the port is taken
        if handoff is not None:
            listener = handoff.listener
        elif kept is not None:
            listener = kept[0]
        else:
            listener = takeover.bind_listener(host, port)
        # a new schema is migrated by a child, and the sandbox's self-test runs, while this
        # process imports the server
        begin_migration(settings.resolved_database_url)
        begin_probe(config_from_settings(settings))
    except RuntimeError as exc:
        if handoff is not None:
            handoff.abandon()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    link = kept[1] if kept is not None else keeper.attach(settings, listener)
    from plughost.api.app import create_app

    takeover.run(settings, create_app(settings), listener, handoff, log_level, link)
