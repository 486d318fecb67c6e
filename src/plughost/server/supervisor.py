"""`plughost serve --workers N`: N server processes behind one listening socket.

One process's event loop routes every call (at concurrency 32 it is the
bottleneck), so N workers share the port. The parent binds the socket once and passes it to
each worker (one shared accept queue: closing one of several SO_REUSEPORT listeners would
reset the connections queued on it, which is what a dying worker would do). Every worker is
a whole server on the same PostgreSQL database (plughost.cluster.member): the lease makes
one of them run the controller, the change feed keeps the others' routes, status board and
key caches in step, and a worker that does not lead calls the home's local replicas itself
(plughost.cluster.direct). A worker that exits is started again; SIGTERM or SIGINT to the
parent stops every worker the way it stops one server. Each answer carries the header
``x-plughost-worker`` with the pid of the worker that made it.

SQLite is refused (one server per file); so is a takeover (each worker would need its own).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from sqlalchemy.engine import make_url

from plughost.config import Settings

log = logging.getLogger("plughost.server.supervisor")

WORKER_HEADER = b"x-plughost-worker"
FD_ENV = "PLUGHOST_LISTEN_FD"
RESTART_BACKOFF_MAX_S = 10.0
STOP_GRACE_S = 15.0  # past the drain timeout, before SIGKILL


def refusal(settings: Settings) -> str | None:
    """Why ``settings.workers`` > 1 cannot run, or None."""
    if settings.workers <= 1:
        return None
    if make_url(settings.resolved_database_url).drivername.startswith("sqlite"):
        return (
            f"--workers {settings.workers} needs PostgreSQL (PLUGHOST_DATABASE_URL="
            "postgresql+psycopg://...): the workers share one database and SQLite is the "
            "one-server embedded database. Run with --workers 1 on SQLite"
        )
    return None


def prepare_database(settings: Settings) -> None:
    """Migrate and create the first key once, before the workers race to do it."""
    from plughost.persistence.db import Database
    from plughost.server.wiring import write_admin_key
    from plughost.services.accounts import Accounts

    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    try:
        migration = db.start_migration()  # alembic in a child: the parent stays small
        if migration is not None:
            migration.wait()
        boot = Accounts(db).bootstrap(settings.bootstrap_key)
        if boot.created_key:
            write_admin_key(settings, boot.created_key)
            log.warning(
                "created the first API key: %s (also written to %s)",
                boot.created_key,
                settings.admin_key_path,
            )
    finally:
        db.dispose()


class Supervisor:
    """Starts the workers, starts again any that exits, stops them all on SIGTERM/SIGINT."""

    def __init__(self, settings: Settings, listener: socket.socket, log_level: str) -> None:
        self.settings = settings
        self.listener = listener
        self.log_level = log_level
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self.started: dict[int, float] = {}
        self.crashes: dict[int, int] = {}
        self.stopping = False

    def command(self) -> list[str]:
        return [sys.executable, "-m", "plughost.server.supervisor", self.log_level]

    def spawn(self, index: int) -> None:
        env = dict(os.environ)
        env.update(
            {
                FD_ENV: str(self.listener.fileno()),
                "PLUGHOST_WORKERS": str(self.settings.workers),
                "PLUGHOST_HOST": self.settings.host,
                "PLUGHOST_PORT": str(self.settings.port),
                "PLUGHOST_WORKER_INDEX": str(index),
            }
        )
        proc = subprocess.Popen(self.command(), env=env, pass_fds=(self.listener.fileno(),))
        self.workers[index] = proc
        self.started[index] = time.monotonic()
        log.warning("worker %d started (pid %d)", index, proc.pid)

    def _stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def _hup(self, _signum: int, _frame: Any) -> None:
        log.warning(
            "SIGHUP ignored: a takeover (SIGHUP, plughost restart, a second serve on this "
            "port) needs --workers 1"
        )

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._hup)
        for index in range(self.settings.workers):
            self.spawn(index)
        due: dict[int, float] = {}
        while not self.stopping:
            time.sleep(0.1)
            now = time.monotonic()
            for index, proc in list(self.workers.items()):
                if index in due or proc.poll() is None:
                    continue
                quick = now - self.started[index] < 10.0
                self.crashes[index] = self.crashes.get(index, 0) + 1 if quick else 0
                delay = min(RESTART_BACKOFF_MAX_S, 0.5 * 2 ** self.crashes[index]) if quick else 0
                log.warning(
                    "worker %d (pid %d) exited with %s; starting it again in %.1f s",
                    index,
                    proc.pid,
                    proc.returncode,
                    delay,
                )
                due[index] = now + delay
            for index, when in list(due.items()):
                if now >= when and not self.stopping:
                    del due[index]
                    self.spawn(index)
        return self.stop_all()

    def stop_all(self) -> int:
        """SIGTERM every worker (each drains like a server stopping), SIGKILL the late ones."""
        log.warning("stopping %d worker(s)", len(self.workers))
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout_s + STOP_GRACE_S
        for proc in self.workers.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
        self.listener.close()
        return 0


def run_parent(settings: Settings, log_level: str) -> int:
    """The parent of ``settings.workers`` workers on ``settings.host:port`` (RuntimeError
    when that cannot run: SQLite, the port in use)."""
    from plughost.server.takeover import bind_listener

    why = refusal(settings)
    if why is not None:
        raise RuntimeError(why)
    listener = bind_listener(settings.host, settings.port)
    try:
        prepare_database(settings)
    except BaseException:
        listener.close()
        raise
    return Supervisor(settings, listener, log_level).run()


# -- the worker process --------------------------------------------------------------------
class WorkerHeader:
    """The ASGI app, its answers naming this worker (``x-plughost-worker: <pid>``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state
        self.header = (WORKER_HEADER, str(os.getpid()).encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = self.header

        async def named(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self.app(scope, receive, named)


def _die_with_parent() -> None:
    """SIGTERM this worker when the parent goes (a SIGKILLed parent leaves no worker)."""
    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return


def peer_listener(settings: Settings) -> socket.socket:
    """This worker's own port, where the other servers' forwarded calls reach it (the
    shared port would hand them to any worker)."""
    from plughost.server.takeover import bind_listener

    sock = bind_listener(settings.host, 0)
    if not settings.peer_url:
        host = settings.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        settings.peer_url = f"http://{host}:{sock.getsockname()[1]}"
    return sock


def run_worker(log_level: str) -> None:
    import uvicorn

    from plughost.api.app import create_app

    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:
        return
    logging.basicConfig(
        level=log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s [worker {os.getpid()}]: %(message)s",
    )
    settings = Settings()
    if settings.fd_check:  # before uvicorn picks uvloop, which binds os.close at its import
        from plughost.server import fdcheck

        fdcheck.install()
    shared = socket.socket(fileno=int(os.environ.pop(FD_ENV)))
    shared.set_inheritable(False)  # no replica started here may keep the port
    private = peer_listener(settings)
    app = WorkerHeader(create_app(settings))
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=log_level, access_log=False
    )
    uvicorn.Server(config).run(sockets=[shared, private])


if __name__ == "__main__":
    run_worker(sys.argv[1] if len(sys.argv) > 1 else "info")
