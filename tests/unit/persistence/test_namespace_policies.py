"""The namespace_policies table (migration 0010) and the PolicyBook over it, on SQLite and
PostgreSQL: the migration matches the table class and goes down and up again, a write shows
at once in the writing server's book and within a refresh in another's, and a namespace's
deletion takes its policy along."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import delete

from plughost.domain.quotas import NamespacePolicy
from plughost.errors import NotFoundError, ValidationError
from plughost.persistence import db as dbmod
from plughost.persistence.db import Database
from plughost.persistence.policies import PolicyRows
from plughost.persistence.tables import Base, Namespace, Organization
from plughost.services.policies import PolicyBook


@pytest.fixture
def db(tmp_path: Path, database_url: str) -> Iterator[Database]:
    database = Database(database_url or f"sqlite:///{tmp_path / 'p.db'}")
    database.migrate()
    with database.session() as s:
        s.add(Organization(id="org", name="org"))
        s.flush()
        s.add_all([Namespace(id=ns, organization_id="org", name=ns) for ns in ("ns_a", "ns_b")])
    try:
        yield database
    finally:
        database.dispose()


def test_the_migration_matches_the_table_and_goes_down_and_up(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if "namespace_polic" in repr(d)] == []
    cfg = Config()
    cfg.set_main_option("script_location", str(dbmod._MIGRATIONS))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    assert not db.at_head()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert db.at_head()
    PolicyRows(db).put("ns_a", {"max_replicas": 1})


def test_a_write_shows_at_once_here_and_after_a_refresh_in_another_server(db: Database) -> None:
    here, there = PolicyBook(PolicyRows(db)), PolicyBook(PolicyRows(db))
    assert here.policy("ns_a") == NamespacePolicy("ns_a")
    assert here.egress_allow("ns_a") == () and here.max_memory_mb("ns_a") is None
    stored = here.put(
        "ns_a",
        {"max_memory_mb": 4096, "requests_per_second": 5, "egress_allow": ["api.example.com"]},
    )
    assert stored.max_memory_mb == 4096 and stored.updated_at is not None
    assert here.max_memory_mb("ns_a") == 4096
    assert here.egress_allow("ns_a") == ("api.example.com",)
    assert set(here.gates) == {"ns_a"}  # only a namespace with a rate has a gate
    assert there.max_memory_mb("ns_a") is None  # not yet
    assert there.refresh() is True
    assert there.policy("ns_a") == here.policy("ns_a")
    assert there.refresh() is False  # nothing new: the stamp alone was read
    gate = there.gates["ns_a"]
    there.put("ns_a", {"max_batch_jobs": 2})  # rates unchanged: the gate keeps its buckets
    assert there.gates["ns_a"] is gate
    there.put("ns_a", {"requests_per_second": None, "egress_allow": None})
    assert there.gates == {} and there.egress_allow("ns_a") == ()
    assert there.policy("ns_a").max_memory_mb == 4096  # fields not given are kept
    assert here.refresh() and here.gates == {}


def test_unknown_namespaces_and_wrong_fields_are_refused(db: Database) -> None:
    book = PolicyBook(PolicyRows(db))
    with pytest.raises(NotFoundError):
        book.put("ns_nope", {"max_replicas": 1})
    with pytest.raises(NotFoundError):
        book.get("ns_nope")
    with pytest.raises(ValidationError):
        book.put("ns_a", {"max_replicas": -1})
    assert book.get("ns_b") == NamespacePolicy("ns_b")  # no row: no limit


def test_a_deleted_namespace_takes_its_policy_along(db: Database) -> None:
    book = PolicyBook(PolicyRows(db))
    book.put("ns_b", {"max_replicas": 3})
    with db.session() as s:
        s.execute(delete(Namespace).where(Namespace.id == "ns_b"))
    assert book.refresh() is True
    assert book.policy("ns_b") == NamespacePolicy("ns_b")


def test_the_follow_task_picks_up_another_writer_within_its_interval(db: Database) -> None:
    async def scenario() -> None:
        book = PolicyBook(PolicyRows(db), refresh_s=0.05)
        book.start()
        try:
            PolicyRows(db).put("ns_a", {"max_replicas": 7})  # as the admin CLI writes
            for _ in range(400):
                if book.max_replicas("ns_a") == 7:
                    break
                await asyncio.sleep(0.05)
            assert book.max_replicas("ns_a") == 7
        finally:
            await book.stop()

    asyncio.run(scenario())
