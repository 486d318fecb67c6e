"""Engine, sessions and migrations. One Database object per server, built from Settings."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# advisory lock keys on PostgreSQL: servers starting together take turns at each step
MIGRATE_LOCK = 0x706C7567  # "plug": migrations
BOOTSTRAP_LOCK = 0x706C7568  # the start-up rows (plughost.services.accounts.bootstrap)
_ADVISORY_XACT_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


T = TypeVar("T")
MIGRATE_URL_ENV = "PLUGHOST_MIGRATE_DATABASE_URL"  # the database a migration child migrates
_REVISION = re.compile(r'^(revision|down_revision)\s*=\s*(?:"([^"]*)"|None)', re.MULTILINE)


@functools.cache
def head_revision() -> str:
    """The newest migration's revision id, read from the migration files' headers (so that
    checking a database is at head needs no alembic: 10 MiB resident and 0.1 s of import)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        fields = {m.group(1): m.group(2) for m in _REVISION.finditer(path.read_text())}
        if fields.get("revision"):
            revisions.add(fields["revision"])
        if fields.get("down_revision"):
            parents.add(fields["down_revision"])
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


class Migration:
    """A migration to head running in a child process (``python -m
    plughost.persistence.migrate``): the server never imports alembic, and goes on with its
    start meanwhile. ``wait()`` raises RuntimeError with the child's last words."""

    def __init__(self, url: str) -> None:
        env = {**os.environ, MIGRATE_URL_ENV: url}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "plughost.persistence.migrate"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def wait(self) -> None:
        _, err = self._proc.communicate()
        if self._proc.returncode != 0:
            words = err.decode("utf-8", "replace").strip().splitlines()[-20:]
            raise RuntimeError("migrating the database failed: " + "\n".join(words))


_EARLY: dict[str, Migration] = {}  # url -> the child begin_migration started


def begin_migration(url: str) -> None:
    """Start migrating ``url`` now when it needs it. ``plughost serve`` calls this as soon as
    it holds its home, so that the child's imports and migrations run while the server
    imports its own modules; the server's ``start_migration()`` then waits for that child.
    Any error is left for that later call to meet and report."""
    db = Database(url)
    try:
        if not db.at_head():
            _EARLY[url] = Migration(url)
    except Exception:  # noqa: BLE001, S110 - reported by start_migration() in its place
        pass
    finally:
        db.dispose()
_BUSY_RETRIES = (0.05, 0.2, 0.5)  # seconds slept before each retry of a read SQLite refused


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # per connection: the wait for a lock first, then the rest. WAL is a property of the
    # file, set once by migrate() (a journal_mode pragma on every new connection was one more
    # statement that takes locks while the server is busy)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def is_busy(exc: BaseException) -> bool:
    """True for SQLite's "database is locked"/"busy": the lock was not had in time."""
    if not isinstance(exc, OperationalError):
        return False
    text_ = str(exc.orig).lower()
    return "locked" in text_ or "busy" in text_


def read_retrying(read: Callable[..., T], *args: Any) -> T:
    """``read(*args)``, tried again a few times while SQLite answers busy. Only for reads: a
    read has no effect to repeat, and a status poll should not fail on a lock that a write
    holds for a moment on a loaded machine."""
    for pause in _BUSY_RETRIES:
        try:
            return read(*args)
        except OperationalError as exc:
            if not is_busy(exc):
                raise
            time.sleep(pause)
    return read(*args)


class Database:
    """Owns the engine and hands out sessions; `migrate()` brings the schema to head."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            # as many pooled connections as the thread pool has threads: opening one runs
            # the PRAGMAs, which showed up in profiles of the status endpoint
            kwargs.update(pool_size=40, max_overflow=10)
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def at_head(self) -> bool:
        """Whether the schema is at the newest migration (one query, no alembic)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return False
            found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            return list(found) == [head_revision()]

    def start_migration(self) -> Migration | None:
        """None when the schema is at head (the usual start); else a child migrating it (the
        one ``begin_migration`` started, when it did)."""
        early = _EARLY.pop(self.url, None)
        if early is not None:
            return early
        return None if self.at_head() else Migration(self.url)

    def migrate(self) -> None:
        """Bring the schema to head in this process (alembic imported only when needed)."""
        if self.at_head():
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        if self.is_sqlite:
            with self.engine.connect() as conn:  # persistent in the file: once is enough
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        # One transaction on one connection: the lock, alembic's look at its version table
        # and every migration. Servers starting together on one PostgreSQL database migrate
        # one at a time; the ones that wait find the schema at head and do nothing. The
        # lock is the transaction's own, so it ends with it, even when a migration fails
        # (never left behind on a pooled connection).
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(_ADVISORY_XACT_LOCK, {"key": MIGRATE_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def lock_bootstrap(self, session: Session) -> None:
        """Inside the start-up transaction: wait until no other server is running it, and
        keep them waiting until this transaction ends. PostgreSQL only; on SQLite the
        transaction's first write takes the database's write lock until commit anyway."""
        if not self.is_sqlite:
            session.execute(_ADVISORY_XACT_LOCK, {"key": BOOTSTRAP_LOCK})

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
