"""The plugin author's commands of the ``plughost`` program.

Local: ``init``, ``check``, ``test``. Against a server (``--url``/``PLUGHOST_URL``,
``--api-key``/``PLUGHOST_API_KEY``, ``--namespace``/``PLUGHOST_NAMESPACE``): ``push``,
``list``, ``status``, ``deploy``, ``undeploy``, ``delete``, ``rollback``, ``infer``,
``history``, ``logs``. People get rich text, scripts ``--json``; any failure exits 1 with
the server's (or the check's, or the plugin's) message.
"""

from __future__ import annotations

import typer

from plughost.cli.author import commands_local, commands_observe, commands_remote

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the author's commands to the ``plughost`` program."""
    app.command("init")(commands_local.init)
    app.command("check")(commands_local.check)
    app.command("test")(commands_local.test)
    app.command("push")(commands_remote.push)
    app.command("list")(commands_remote.list_plugins)
    app.command("status")(commands_remote.status)
    app.command("deploy")(commands_remote.deploy)
    app.command("undeploy")(commands_remote.undeploy)
    app.command("rollback")(commands_remote.rollback)
    app.command("delete")(commands_remote.delete)
    app.command("infer")(commands_remote.infer)
    app.command("history")(commands_observe.history)
    app.command("logs")(commands_observe.logs)
