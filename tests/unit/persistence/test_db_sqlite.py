"""SQLite behaviour of Database: WAL set once by migrate, a lock wait on every connection, and
the retry of reads that SQLite answered busy."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from plughost.persistence import db as dbmod
from plughost.persistence.db import Database, is_busy, read_retrying


def _op_error(message: str) -> OperationalError:
    return OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))


def test_migrate_sets_wal_and_every_connection_waits_for_locks(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'p.db'}")
    database.migrate()
    database.dispose()  # the next connection is a new one: its PRAGMAs are the hook's
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_busy_read_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbmod, "_BUSY_RETRIES", (0.0, 0.0, 0.0))
    calls: list[int] = []

    def read(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise _op_error("database is locked")
        return x * 2

    assert read_retrying(read, 21) == 42
    assert calls == [21, 21, 21]


def test_a_read_busy_every_time_raises_after_the_last_try(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbmod, "_BUSY_RETRIES", (0.0, 0.0))
    calls: list[None] = []

    def read() -> None:
        calls.append(None)
        raise _op_error("database is locked")

    with pytest.raises(OperationalError):
        read_retrying(read)
    assert len(calls) == 3  # two retries, then the last try's error


def test_other_database_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbmod, "_BUSY_RETRIES", (0.0, 0.0, 0.0))
    calls: list[None] = []

    def read() -> None:
        calls.append(None)
        raise _op_error("no such table: plugins")

    with pytest.raises(OperationalError):
        read_retrying(read)
    assert len(calls) == 1
    assert is_busy(_op_error("database is locked")) and not is_busy(ValueError("locked"))
