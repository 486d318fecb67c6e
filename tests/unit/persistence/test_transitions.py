"""The one door for status changes (plughost.persistence.transitions): a move happens only
from the status the writer expected, and each move (and only a move) adds its event row in
the same transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dbseed import PLUGIN_ID, seed_plugin
from sqlalchemy import select

from plughost.domain.states import Status
from plughost.persistence.db import Database
from plughost.persistence.tables import Release, ReleaseEvent
from plughost.persistence.transitions import BATCHES, RELEASES


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def release_id(db: Database) -> int:
    plugin_pk = seed_plugin(db)
    with db.session() as s:
        row = Release(
            namespace_id="ns",
            plugin_pk=plugin_pk,
            plugin_id=PLUGIN_ID,
            name="p",
            version="1.0.0",
            status=Status.QUEUED.value,
        )
        s.add(row)
        s.flush()
        RELEASES.record(s, row.id, None, row.status, "queued")
        return row.id


def _events(db: Database, release_id: int) -> list[tuple[str | None, str, str | None]]:
    with db.session() as s:
        rows = s.scalars(
            select(ReleaseEvent)
            .where(ReleaseEvent.release_id == release_id)
            .order_by(ReleaseEvent.id)
        ).all()
        return [(r.from_status, r.to_status, r.message) for r in rows]


def _row(db: Database, release_id: int) -> tuple[str, str | None]:
    with db.session() as s:
        row = s.get(Release, release_id)
        assert row is not None
        return row.status, row.message


def test_a_move_from_the_expected_status_sets_the_row_and_adds_an_event(
    db: Database, release_id: int
) -> None:
    with db.session() as s:
        moved = RELEASES.move(
            s, release_id, Status.QUEUED, Status.PENDING, {"message": "picked"}, "picked"
        )
    assert moved is True
    assert _row(db, release_id) == ("pending", "picked")
    assert _events(db, release_id) == [(None, "queued", "queued"), ("queued", "pending", "picked")]


def test_a_move_from_a_status_the_row_left_changes_nothing(db: Database, release_id: int) -> None:
    with db.session() as s:
        moved = RELEASES.move(
            s, release_id, Status.DEPLOYED, Status.NOT_DEPLOYED, {"message": "late"}, "late"
        )
    assert moved is False
    assert _row(db, release_id) == ("queued", None)
    assert _events(db, release_id) == [(None, "queued", "queued")]


def test_of_two_racing_writers_only_the_first_moves(db: Database, release_id: int) -> None:
    with db.session() as s:
        first = RELEASES.move(s, release_id, Status.QUEUED, Status.PENDING, {}, "one")
    with db.session() as s:
        second = RELEASES.move(s, release_id, Status.QUEUED, Status.NOT_DEPLOYED, {}, "two")
    assert (first, second) == (True, False)
    assert [e[1] for e in _events(db, release_id)] == ["queued", "pending"]


def test_a_failed_transaction_keeps_neither_the_move_nor_its_event(
    db: Database, release_id: int
) -> None:
    with pytest.raises(RuntimeError), db.session() as s:
        RELEASES.move(s, release_id, Status.QUEUED, Status.PENDING, {}, "rolled back")
        raise RuntimeError("the fence refused")
    assert _row(db, release_id) == ("queued", None)
    assert len(_events(db, release_id)) == 1


def test_each_door_names_its_own_tables() -> None:
    assert (RELEASES.rows.__tablename__, RELEASES.events.__tablename__) == (
        "releases",
        "release_events",
    )
    assert BATCHES.key == "batch_id"
    assert BATCHES.rows.__tablename__ == "batch_jobs"
