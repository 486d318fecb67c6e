"""Entry point of a replica process: ``python -I -m plughost.replica --socket PATH ...``.

Start-up handshake on the original stdout (one JSON line, then that channel is closed):
``{"event": "ready", "pid": N}`` once the service is built and the socket listens, or
``{"event": "failed", "error": "<Type>: <message>"}`` followed by exit code 3. Before any
plugin code runs, fd 1 and ``sys.stdout`` are pointed at stderr so a plugin's prints cannot
corrupt the handshake. Then, still before any plugin code, ``--sandbox`` applies the runner's
limits (uid, rlimits, no_new_privs, seccomp: :mod:`plughost.sandbox.runner`) and
``--env-path`` appends the plugin environment (:mod:`plughost.envs`) to ``sys.path``, after
site-packages so it never shadows the base set, and ``--requirements`` then checks the
manifest's dependencies (a missing one fails the start).
SIGTERM/SIGINT, or the parent process going away, drain in-flight calls (bounded by
``--drain-timeout``) and exit 0.

``--auth stdin``: the server writes a per-replica secret on stdin, and every connection
must prove it first (:mod:`plughost.replica.auth`). ``--orphan-timeout S``: the replica
outlives the server that started it (the next server adopts it), so the parent is
not watched; instead it stops once no authenticated connection has been open for ``S``
seconds (0: never).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import orjson

from plughost.domain.serve_config import DEFAULT_BATCH_WAIT_S
from plughost.replica.batching import Batcher, batch_runner
from plughost.replica.container_link import ContainerLink
from plughost.replica.invoke import ServiceInvoker
from plughost.replica.loader import (
    PLUGIN_PACKAGE,
    LoadedPlugin,
    PluginLoadError,
    install_import_paths,
    load_plugin,
)
from plughost.replica.preload import baseline, learn
from plughost.replica.server import ReplicaServer
from plughost.replica.tagging import tag_output
from plughost.runtime_api import RUNTIME_API_DIR, container_transport

if TYPE_CHECKING:
    import argparse

logger = logging.getLogger("plughost.replica")

EXIT_OK = 0
EXIT_LOAD_FAILED = 3
MAX_ERROR_CHARS = 8000
PARENT_POLL_S = 1.0
ORPHAN_POLL_S = 5.0


class Handshake:
    """The private channel (the original fd 1) that carries exactly one start-up event."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def divert_stdout(cls) -> Handshake:
        """Keep the original stdout for the handshake and send fd 1 and sys.stdout to stderr."""
        sys.stdout.flush()
        private_fd = os.dup(1)
        os.dup2(2, 1)
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(line_buffering=True)
        return cls(private_fd)

    def send(self, event: dict[str, Any]) -> None:
        """Write ``event`` as one JSON line and close the channel; later sends are ignored."""
        if self._fd is None:
            return
        data = orjson.dumps(event) + b"\n"
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except OSError as exc:
            logger.warning("could not write the start-up handshake: %s", exc)
        finally:
            os.close(self._fd)
            self._fd = None


def describe_error(exc: BaseException) -> str:
    """``"<Type>: <message>"``, naming the missing module of an ImportError."""
    text = f"{type(exc).__name__}: {exc}"
    missing = getattr(exc, "name", None)
    if isinstance(exc, ImportError) and missing and missing not in text:
        text += f" (module {missing!r})"
    return text[:MAX_ERROR_CHARS]


REQUIRED_OPTION = "--socket"
# The replica's options: flag -> (dest, type, default, help).
OPTIONS: dict[str, tuple[str, Callable[[str], Any], Any, str]] = {
    "--socket": ("socket", Path, None, "Unix socket path to listen on"),
    "--plugin-dir": ("plugin_dir", Path, Path("."), "plugin folder (default: cwd)"),
    "--init-kwargs": ("init_kwargs", str, "{}", "JSON object passed to the factory or constructor"),
    "--drain-timeout": ("drain_timeout", float, 10.0, "seconds to finish calls on stop"),
    "--listen-fd": ("listen_fd", int, None, "an inherited listening socket to serve on"),
    "--sandbox": ("sandbox", str, None, "sandbox policy (JSON), applied before the plugin loads"),
    "--requirements": ("requirements", str, "[]", "JSON list of the manifest's dependencies"),
    "--env-path": ("env_path", str, None, "plugin environment folder appended to sys.path"),
    "--auth": ("auth", str, None, "'stdin': read the replica's secret from stdin"),
    "--orphan-timeout": (
        "orphan_timeout", float, None, "outlive the parent; stop after S s without a server"
    ),
    "--serving": (
        "serving", str, None,
        'JSON {"max_batch_size": N, "batch_wait_timeout_s": S, "request_timeout_s": T}',
    ),
}


def request_timeout(option: str | None) -> float | None:
    """The release's request deadline from ``--serving`` (None: calls bring their own)."""
    value = orjson.loads(option).get("request_timeout_s") if option else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def make_batcher(plugin: LoadedPlugin, invoker: ServiceInvoker, option: str | None) -> Batcher | None:
    """The replica's micro-batcher when ``--serving`` asks for batches above one call and the
    service can take them (else None: calls are answered one by one)."""
    if not option:
        return None
    config = orjson.loads(option)
    size = int(config.get("max_batch_size") or 1)
    if size <= 1:
        return None
    if plugin.batch_handler is None:
        logger.warning(
            "serve_config asks for batches of %d, but the service has no run_inference_batch;"
            " calls are answered one by one", size)
        return None
    wait = float(config.get("batch_wait_timeout_s", DEFAULT_BATCH_WAIT_S))
    return Batcher(batch_runner(plugin.batch_handler, invoker.in_thread), size, wait)


def argument_parser() -> argparse.ArgumentParser:
    """The full parser: help, usage and every error message of the replica's command line."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m plughost.replica")
    for flag, (_, convert, default, text) in OPTIONS.items():
        parser.add_argument(
            flag, type=convert, default=default, required=flag == REQUIRED_OPTION, help=text
        )
    return parser


def _parse_plain(argv: Sequence[str]) -> SimpleNamespace | None:
    """The command line the backend builds (every option spelled out as ``--name value``),
    parsed without argparse; None for anything else (help, ``--name=value``, abbreviations,
    values starting with ``-``, bad values, a missing ``--socket``).

    argparse and the ``shutil`` its help formatter imports (bz2, lzma, zlib) would stay in
    every idle replica for about 1 MiB; they are loaded only when this returns None.
    """
    if len(argv) % 2:
        return None
    values = {dest: default for dest, _, default, _ in OPTIONS.values()}
    for flag, text in zip(argv[::2], argv[1::2]):
        option = OPTIONS.get(flag)
        if option is None or text.startswith("-"):
            return None
        dest, convert, _, _ = option
        try:
            values[dest] = convert(text)
        except ValueError:
            return None
    if values[OPTIONS[REQUIRED_OPTION][0]] is None:
        return None
    return SimpleNamespace(**values)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace | SimpleNamespace:
    """Parse the replica's command line (``sys.argv[1:]`` when ``argv`` is None); anything
    the plain parser does not take goes to argparse, which also exits on errors."""
    plain = _parse_plain(sys.argv[1:] if argv is None else list(argv))
    if plain is not None:
        return plain
    return argument_parser().parse_args(argv)


def check_requirements(text: str, plugin_dir: Path) -> None:
    """Raise PluginLoadError naming every manifest dependency this environment lacks."""
    entries = orjson.loads(text)
    if not isinstance(entries, list):
        raise TypeError("--requirements must be a JSON list")
    if not entries:
        return
    # Imported on use: most plugins declare no dependencies, and an idle replica should not
    # carry the check's imports (importlib.metadata and what it pulls in: email, zipfile...).
    from plughost.sandbox.requirements import missing_requirements

    missing = missing_requirements([str(e) for e in entries], plugin_dir)
    if missing:
        raise PluginLoadError(
            "missing dependencies (not installed where replicas run): " + ", ".join(missing)
        )


def parse_init_kwargs(text: str) -> dict[str, Any]:
    """Decode the ``--init-kwargs`` JSON; ValueError if it is not JSON, TypeError if no object."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"--init-kwargs is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise TypeError("--init-kwargs must be a JSON object")
    return value


async def _watch_parent(server: ReplicaServer, parent_pid: int) -> None:
    """Stop the server when the process that started the replica has gone."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_POLL_S)
    logger.warning("parent process %d is gone; stopping", parent_pid)
    server.request_stop()


async def _watch_orphan(server: ReplicaServer, timeout_s: float) -> None:
    """Stop the server once no authenticated connection has been open for ``timeout_s``."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(min(ORPHAN_POLL_S, timeout_s / 4))
        since = server.idle_since
        if since is not None and loop.time() - since >= timeout_s:
            logger.warning("no server connected for %g s; stopping", timeout_s)
            server.request_stop()
            return


async def serve(
    plugin: LoadedPlugin,
    args: argparse.Namespace | SimpleNamespace,
    handshake: Handshake,
    parent_pid: int,
    secret: str | None = None,
    learned: dict[str, Any] | None = None,
    container: ContainerLink | None = None,
) -> int:
    """Listen, announce readiness (with ``learned``: what a spare may preload), serve until
    stopped; the process exit code. ``container`` carries plugin code's container calls."""
    link = container or ContainerLink()
    link.attach(asyncio.get_running_loop())
    invoker = ServiceInvoker.for_plugin(plugin, may_inline=lambda: not link.used)
    server = ReplicaServer(
        invoker, args.socket, args.drain_timeout, listen_fd=args.listen_fd, secret=secret,
        container=link, batcher=make_batcher(plugin, invoker, args.serving),
        request_timeout_s=request_timeout(args.serving),
    )
    try:
        await server.start()
    except OSError as exc:
        handshake.send({"event": "failed", "error": describe_error(exc)})
        return EXIT_LOAD_FAILED
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.request_stop)
    orphan = args.orphan_timeout
    if orphan is None:
        watcher = asyncio.create_task(_watch_parent(server, parent_pid))
    elif orphan > 0:
        watcher = asyncio.create_task(_watch_orphan(server, orphan))
    else:
        watcher = asyncio.create_task(asyncio.Event().wait())
    ready: dict[str, Any] = {"event": "ready", "pid": os.getpid()}
    if learned and (learned["modules"] or learned["env"]):
        ready["preload"] = learned
    handshake.send(ready)
    try:
        await server.serve_until_stopped()
    finally:
        watcher.cancel()
    if invoker.thread_busy:
        # A plain call outlived the drain: the interpreter would wait on its thread forever.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_OK)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run a replica; the process exit code (0 after a clean stop, 3 if loading failed)."""
    args = parse_args(argv)
    # Taken before the plugin loads: a parent that dies during a slow load is noticed too.
    parent_pid = os.getppid()
    # The plugin folder is not ours to write to (and a scanner rejects bytecode in it).
    sys.dont_write_bytecode = True
    handshake = Handshake.divert_stdout()
    tag_output()  # print and logging lines tagged for the server (plughost.logs.tags)
    secret: str | None = None
    try:
        if args.auth is not None:
            if args.auth != "stdin":
                raise ValueError("--auth takes only 'stdin'")
            from plughost.replica.auth import read_secret_from_stdin

            secret = read_secret_from_stdin()
        init_kwargs = parse_init_kwargs(args.init_kwargs)
        # The limits go on before any plugin code runs (the runner's imports are loaded only
        # when there is a sandbox to enter; the requirement check may import stdlib modules
        # under the limits, before the plugin folder is on sys.path).
        if args.sandbox is not None:
            from plughost.sandbox.policy import RunnerPolicy
            from plughost.sandbox.runner import enter as enter_sandbox

            enter_sandbox(RunnerPolicy.from_json(args.sandbox))
            from plughost.egress.relay import start_from_env

            start_from_env()  # an allowlisted namespace's way to the egress proxy
        if args.env_path and args.env_path not in sys.path:  # a spare appended it already
            sys.path.append(args.env_path)
        check_requirements(args.requirements, args.plugin_dir)
        # before the plugin loads: its container calls (self.container) go through the link
        link = ContainerLink()
        container_transport.install(link.submit)
        modules_before, env_before = baseline()
        install_import_paths(args.plugin_dir.resolve())
        plugin = load_plugin(
            args.plugin_dir, init_kwargs, container=container_transport.plugin_container()
        )
    except (Exception, SystemExit) as exc:  # the plugin's own failure, reported verbatim
        logger.exception("plugin failed to load")
        handshake.send({"event": "failed", "error": describe_error(exc)})
        return EXIT_LOAD_FAILED
    # what the next warm spare of this release imports ahead of its byte (worker.preload)
    learned = learn(modules_before, env_before, (args.plugin_dir, RUNTIME_API_DIR),
                    (PLUGIN_PACKAGE,))
    return run_loop(serve(plugin, args, handshake, parent_pid, secret, learned, link))


def run_loop(main_coro: Coroutine[Any, Any, int]) -> int:
    """Run the replica on uvloop when it is installed (with the server's uvicorn[standard];
    a plugin environment's interpreter may lack it): a call's turn on the replica's loop
    costs a third of the stdlib loop's (a Unix-socket ping-pong with the replica's framing:
    25 against 8.6 us of CPU per round trip)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main_coro)
