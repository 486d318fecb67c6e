"""The integration tier: the whole app in this process over `httpx.ASGITransport`, on a real
SQLite or PostgreSQL database (tests/inproc.py). A test that needs a `plughost serve` process
belongs in tests/e2e."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inproc import InProcessServer
from support import create_pg_database, drop_pg_database


@pytest.fixture(scope="module")
def server(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """One app in process per test module and database kind (the e2e tiers' `server` is a process)."""
    url = create_pg_database() if db_kind == "postgres" else ""
    srv = InProcessServer(home=tmp_path_factory.mktemp(f"app-{db_kind}"), database_url=url)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if url:
            drop_pg_database(url)
