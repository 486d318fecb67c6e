"""Batch job rows: migration matches the tables, compare-and-set transitions, events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from dbseed import seed_plugin

from plughost.domain.batch_states import BatchStatus
from plughost.persistence.batches import Batches, NewBatch
from plughost.persistence.db import Database
from plughost.persistence.tables import Base


@pytest.fixture
def db(tmp_path: Path, database_url: str) -> Iterator[Database]:
    """A migrated database of each kind the suite runs on (SQLite, PostgreSQL)."""
    database = Database(database_url or f"sqlite:///{tmp_path / 'b.db'}")
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


def _new(pk: int, batch_id: str = "bat_1") -> NewBatch:
    return NewBatch(
        id=batch_id,
        organization_id="org",
        namespace_id="ns",
        plugin_pk=pk,
        plugin_id="p_1_0_0",
        input_key="in",
        input_format="jsonl",
        input_name="a.jsonl",
        input_owned=True,
        parameters={"x": 1},
        on_error="skip",
    )


def test_migration_matches_the_batch_tables(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    batch_diffs = [d for d in diff if "batch_job" in repr(d)]
    assert batch_diffs == []


def test_compare_and_set_moves_once_and_records_events(db: Database) -> None:
    batches = Batches(db)
    view = batches.create(_new(seed_plugin(db)))
    assert view.status is BatchStatus.QUEUED and view.parameters == {"x": 1}
    assert batches.move("bat_1", BatchStatus.QUEUED, BatchStatus.RUNNING)
    assert not batches.move("bat_1", BatchStatus.QUEUED, BatchStatus.RUNNING)
    batches.progress("bat_1", rows_done=5, errors=[{"first_row": 0}])
    assert batches.move("bat_1", BatchStatus.RUNNING, BatchStatus.CANCELLED, "by user")
    got = batches.get("bat_1")
    assert got is not None and got.status is BatchStatus.CANCELLED
    assert got.rows_done == 5 and got.finished_at is not None and got.started_at is not None
    assert [e[1] for e in batches.events("bat_1")] == ["queued", "running", "cancelled"]


def test_finished_jobs_never_move_again(db: Database) -> None:
    batches = Batches(db)
    batches.create(_new(seed_plugin(db)))
    with pytest.raises(ValueError):
        batches.move("bat_1", BatchStatus.COMPLETED, BatchStatus.RUNNING)
