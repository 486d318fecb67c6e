"""Shared fixtures: live servers on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import LiveServer, create_pg_database, drop_pg_database

DB_KINDS = [k for k in os.environ.get("PLUGHOST_TEST_DBS", "sqlite,postgres").split(",") if k]


@pytest.fixture(scope="session", params=DB_KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(db_kind: str) -> Iterator[str]:
    """A fresh, empty database of the parametrised kind ("" = SQLite in the server's home)."""
    if db_kind == "sqlite":
        yield ""
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="module")
def server(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server per test module and database kind."""
    url = create_pg_database() if db_kind == "postgres" else ""
    srv = LiveServer(home=tmp_path_factory.mktemp(f"home-{db_kind}"), database_url=url)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if url:
            drop_pg_database(url)
