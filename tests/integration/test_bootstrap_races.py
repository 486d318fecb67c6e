"""Start-up writes that several servers run at the same moment, on real SQLite and
PostgreSQL: insert-or-ignore (plughost.persistence.idempotent), the bootstrap of the default
accounts and the URL-signing secret, and the migration lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from support import PG_ADMIN_DSN, create_pg_database, drop_pg_database

import plughost.migrations
from plughost.persistence.db import MIGRATE_LOCK, Database
from plughost.persistence.idempotent import ensure_row, insert_or_ignore
from plughost.persistence.tables import ApiKey, Namespace, Organization, ServerSecret
from plughost.services.accounts import DEFAULT_NAMESPACE, DEFAULT_ORG, Accounts, hash_key

pytestmark = pytest.mark.integration

MIGRATIONS = Path(plughost.migrations.__file__).parent
WAIT_S = 30.0  # the longest a session may take to reach the lock it is meant to wait on


class Background:
    """``fn()`` in a thread; :meth:`result` its value, or raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # noqa: BLE001 - result() raises it in the test's thread
            self._error = exc

    def result(self) -> Any:
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "the background session never finished"
        if self._error is not None:
            raise self._error
        return self._value


def _url(kind: str, tmp_path: Path) -> str:
    return create_pg_database() if kind == "postgres" else f"sqlite:///{tmp_path / 'p.db'}"


@pytest.fixture
def database(db_kind: str, tmp_path: Path) -> Iterator[Database]:
    db = Database(_url(db_kind, tmp_path))
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()
        if not db.is_sqlite:
            drop_pg_database(db.url)


def _waiting(db: Database, locktype: str) -> None:
    """Return once a session of ``db`` waits for a lock of ``locktype`` (``advisory``, or
    ``transactionid``: another transaction's uncommitted row). On SQLite, where a session
    waiting for the write lock cannot be seen from outside, give it a moment instead (the
    outcome is checked either way; only how sharp the test is depends on it)."""
    if db.is_sqlite:
        time.sleep(0.5)
        return
    name = db.url.rsplit("/", 1)[1]
    query = (
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE NOT l.granted AND a.datname = %s AND l.locktype = %s"
    )
    deadline = time.monotonic() + WAIT_S
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        while True:
            row = conn.execute(query, (name, locktype)).fetchone()
            if row is not None and row[0] > 0:
                return
            assert time.monotonic() < deadline, f"no session waited for a {locktype} lock"
            time.sleep(0.02)


def _count(db: Database, model: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _secret(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


# -- insert-or-ignore ---------------------------------------------------------------------
def test_insert_or_ignore_inserts_once_and_keeps_the_first_row(database: Database) -> None:
    with database.session() as s:
        assert insert_or_ignore(s, ServerSecret, _secret("a", "first"), ["name"]) is True
    with database.session() as s:
        assert insert_or_ignore(s, ServerSecret, _secret("a", "second"), ["name"]) is False
        assert ensure_row(s, ServerSecret, _secret("a", "third"), ["name"]).value == "first"
    assert _count(database, ServerSecret) == 1


def test_insert_or_ignore_still_fails_on_another_constraint(database: Database) -> None:
    values = {"id": DEFAULT_ORG, "name": "default"}
    with database.session() as s:
        insert_or_ignore(s, Organization, values, ["id"])
        key = {"id": "key_same", "organization_id": DEFAULT_ORG, "prefix": "p", "label": ""}
        insert_or_ignore(s, ApiKey, {**key, "key_hash": "h1"}, ["key_hash"])
    with pytest.raises(IntegrityError), database.session() as s:  # same id, new hash
        insert_or_ignore(s, ApiKey, {**key, "key_hash": "h2"}, ["key_hash"])


def test_ensure_row_returns_the_row_a_racing_session_commits(database: Database) -> None:
    with database.session() as first:
        insert_or_ignore(first, ServerSecret, _secret("race", "winner"), ["name"])
        second = Background(lambda: _ensure_secret(database, "race", "loser"))
        _waiting(database, "transactionid")
    assert second.result() == "winner"
    assert _count(database, ServerSecret) == 1


def _ensure_secret(db: Database, name: str, value: str) -> str:
    with db.session() as s:
        return ensure_row(s, ServerSecret, _secret(name, value), ["name"]).value


# -- the bootstrap and the signing secret -------------------------------------------------
def _half_bootstrapped(s: Any, key: str) -> None:
    """What a server in the middle of its bootstrap has written, not yet committed."""
    s.add(Organization(id=DEFAULT_ORG, name="default"))
    s.flush()
    s.add(Namespace(id=DEFAULT_NAMESPACE, organization_id=DEFAULT_ORG, name="default"))
    s.add(
        ApiKey(
            id="key_other",
            organization_id=DEFAULT_ORG,
            key_hash=hash_key(key),
            prefix=key[:8],
            label="bootstrap",
        )
    )
    s.flush()


@pytest.mark.parametrize("given", [True, False], ids=["given-key", "generated-key"])
def test_bootstrap_takes_the_rows_of_a_server_bootstrapping_at_the_same_moment(
    database: Database, given: bool
) -> None:
    key = "ph_shared_bootstrap_key"
    with database.session() as other:
        _half_bootstrapped(other, key)
        ours = Background(lambda: Accounts(database).bootstrap(key if given else ""))
        _waiting(database, "transactionid")
    assert ours.result().created_key is None  # the other server's key is the first key
    assert _count(database, Organization) == _count(database, Namespace) == 1
    with database.session() as s:
        assert s.scalars(select(ApiKey.id)).all() == ["key_other"]


def test_signing_secret_is_the_one_another_server_stored_first(database: Database) -> None:
    stored = "ab" * 32
    with database.session() as other:
        other.add(ServerSecret(name="url_signing", value=stored))
        other.flush()
        ours = Background(Accounts(database).signing_secret)
        _waiting(database, "transactionid")
    assert ours.result() == bytes.fromhex(stored)
    assert Accounts(database).signing_secret() == bytes.fromhex(stored)


@pytest.mark.postgres
def test_bootstrap_waits_for_another_bootstrap_to_end(tmp_path: Path) -> None:
    """A bootstrap in progress on PostgreSQL holds the others back until it commits, so a
    generated first key is generated once even when the other rows are already there."""
    db = Database(_url("postgres", tmp_path))
    db.migrate()
    try:
        with db.session() as s:  # a database whose accounts rows exist but has no key yet
            insert_or_ignore(s, Organization, {"id": DEFAULT_ORG, "name": "default"}, ["id"])
        with db.session() as other:
            db.lock_bootstrap(other)
            ours = Background(lambda: Accounts(db).bootstrap(""))
            _waiting(db, "advisory")
            other.add(
                ApiKey(
                    id="key_other",
                    organization_id=DEFAULT_ORG,
                    key_hash="h",
                    prefix="p",
                    label="bootstrap",
                )
            )
        assert ours.result().created_key is None
        assert _count(db, ApiKey) == 1
    finally:
        db.dispose()
        drop_pg_database(db.url)


@pytest.mark.parametrize("round_", range(3))
def test_servers_bootstrapping_together_agree_on_one_key_and_one_secret(
    db_kind: str, tmp_path: Path, round_: int
) -> None:
    """Four servers (one engine each) bootstrap at the same moment on a migrated, empty
    database. (Migrations that run together are in the test below and in
    tests/e2e/test_concurrent_start.py: alembic keeps module-level state, so two of them
    cannot run at once in one process.)"""
    url = _url(db_kind, tmp_path)
    migrated = Database(url)
    migrated.migrate()
    migrated.dispose()
    gate = threading.Barrier(4)

    def start() -> tuple[str | None, bytes]:
        db = Database(url)
        try:
            gate.wait()
            accounts = Accounts(db)
            return accounts.bootstrap("").created_key, accounts.signing_secret()
        finally:
            db.dispose()

    try:
        results = [Background(start) for _ in range(4)]
        outcomes = [r.result() for r in results]
        created = [key for key, _ in outcomes if key is not None]
        assert len(created) == 1, outcomes
        assert len({secret for _, secret in outcomes}) == 1
        check = Database(url)
        try:
            assert _count(check, ApiKey) == _count(check, Organization) == 1
            with check.session() as s:
                stored = s.scalars(select(ApiKey.key_hash)).one()
            assert stored == hash_key(created[0])
        finally:
            check.dispose()
    finally:
        if db_kind == "postgres":
            drop_pg_database(url)


@pytest.mark.postgres
def test_migrations_wait_for_the_migration_lock(tmp_path: Path) -> None:
    db = Database(_url("postgres", tmp_path))
    name = db.url.rsplit("/", 1)[1]
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    try:
        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}") as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
            migrating = Background(db.migrate)
            _waiting(db, "advisory")
            row = holder.execute("SELECT to_regclass('alembic_version')").fetchone()
            assert row is not None and row[0] is None  # nothing migrated while it waits
            holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
            holder.commit()
            migrating.result()
            versions = holder.execute("SELECT version_num FROM alembic_version").fetchall()
        assert [v[0] for v in versions] == [head]
    finally:
        db.dispose()
        drop_pg_database(db.url)
