"""The SQLite home's lock: one ``plughost serve`` per embedded database. A light module
(no server imports): ``plughost serve`` takes the lock first thing, before it imports the
server, so that its migration can start early (``plughost.persistence.db.begin_migration``)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url

from plughost.config import Settings

# The SQLite home's lock file, held open (flocked) while this process serves on it. Per
# process, like the lock: taken before the app is built (the refusal must come before any
# migration), so the functions below are its only door.
_home_lock: list[IO[Any]] = []


def lock_sqlite_home(settings: Settings) -> None:
    """SQLite is one server's embedded database: a second ``plughost serve`` on the same
    file is refused (RuntimeError with the reason) while the first one runs, unless it took
    over from it (plughost.server.handover: the first one released this lock when handing over)."""
    url = make_url(settings.resolved_database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        return
    path = Path(url.database).with_suffix(".serve.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RuntimeError(
            f"another plughost server ({holder}) already runs on the SQLite database "
            f"{url.database}. SQLite is the one-server embedded database: start this one on "
            "that server's port to take over from it (an upgrade without downtime), stop "
            "that server, give this one its own PLUGHOST_HOME, or run several servers on "
            "PostgreSQL (PLUGHOST_DATABASE_URL=postgresql+psycopg://...)"
        ) from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}, port {settings.port}\n")
    handle.flush()
    _home_lock.append(handle)


def sqlite_home_locked() -> bool:
    """Whether this process holds its SQLite home's lock (see :func:`lock_sqlite_home`)."""
    return bool(_home_lock)


def unlock_sqlite_home() -> None:
    """Give the SQLite home's lock up (a takeover: the successor opens the same file);
    :func:`lock_sqlite_home` takes it again. Nothing when not held."""
    for handle in _home_lock:
        handle.close()
    _home_lock.clear()
