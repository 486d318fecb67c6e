"""The controller lease on a real PostgreSQL (plughost.cluster.leases): takeover after
expiry on the database's clock, and the fence refusing an old leader's release writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from support import create_pg_database, drop_pg_database

from plughost.cluster.leases import LeaseLost, SqlLeases
from plughost.domain.states import Status
from plughost.persistence.db import Database
from plughost.persistence.releases import Releases
from plughost.persistence.tables import Namespace, Organization, Plugin

pytestmark = pytest.mark.postgres


@pytest.fixture
def db() -> Iterator[Database]:
    url = create_pg_database()
    database = Database(url)
    database.migrate()
    with database.session() as s:
        s.add(Organization(id="org", name="org"))
        s.flush()
        s.add(Namespace(id="ns", organization_id="org", name="ns"))
    try:
        yield database
    finally:
        database.dispose()
        drop_pg_database(url)


def _release(db: Database, releases: Releases) -> int:
    with db.session() as s:
        row = Plugin(
            plugin_id="p_1_0_0",
            organization_id="org",
            scope="",
            name="p",
            version="1.0.0",
            storage_key="k",
            archive_url="",
            code_hash="",
            validation_status="passed",
            validation_errors=[],
            security_scan_passed=True,
            has_realtime=True,
            manifest={},
        )
        s.add(row)
        s.flush()
        s.expunge(row)
    return releases.enqueue("ns", row, "queued").id


def _age_lease(db: Database, seconds: float) -> None:
    """As if ``seconds`` passed on the database's clock with no renewal: the lease's expiry
    moves that much closer (every lease rule compares it with ``now()``)."""
    with db.session() as s:
        s.execute(
            text("UPDATE leases SET expires_at = expires_at - make_interval(secs => :s)"),
            {"s": seconds},
        )


def _wait_for_a_lock_wait(db: Database) -> None:
    """Until another session of this database waits on a lock (bounded)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 30
    while True:
        with db.session() as s:
            if s.execute(query).scalar_one():
                return
        assert time.monotonic() < deadline, "the takeover never waited on the lease row"
        time.sleep(0.02)


def test_takeover_happens_only_after_expiry_and_bumps_the_epoch(db: Database) -> None:
    leases = SqlLeases(db)
    assert leases.acquire("controller", "a", "http://a", 60) == 1
    assert leases.acquire("controller", "b", "http://b", 60) is None
    info = leases.read("controller")
    assert info is not None and (info.holder, info.epoch, info.expired) == ("a", 1, False)
    assert leases.renew("controller", "a", 1, 60)
    _age_lease(db, 59)  # one second of the renewed ttl left
    assert leases.acquire("controller", "b", "http://b", 60) is None
    _age_lease(db, 2)  # now past it
    assert leases.acquire("controller", "b", "http://b", 60) == 2
    assert not leases.renew("controller", "a", 1, 60)  # a learns it lost


def test_the_fence_refuses_an_old_leaders_write_and_lets_the_new_ones_through(
    db: Database,
) -> None:
    leases, releases = SqlLeases(db), Releases(db)
    rid = _release(db, releases)
    leases.acquire("controller", "a", "http://a", 60)

    def fence_of(holder: str, epoch: int):  # type: ignore[no-untyped-def]
        return lambda s: leases.check(s, "controller", holder, epoch)

    assert releases.move(rid, Status.QUEUED, Status.PENDING, "a claims", fence=fence_of("a", 1))
    _age_lease(db, 61)
    with pytest.raises(LeaseLost):  # expired, even before anyone took over
        releases.note(rid, Status.PENDING, "late", fence=fence_of("a", 1))
    assert leases.acquire("controller", "b", "http://b", 60) == 2
    with pytest.raises(LeaseLost):
        releases.move(rid, Status.PENDING, Status.IN_PROGRESS, "a", fence=fence_of("a", 1))
    assert releases.move(rid, Status.PENDING, Status.IN_PROGRESS, "b", fence=fence_of("b", 2))
    view = releases.get(rid)
    assert view is not None and view.status is Status.IN_PROGRESS and view.message == "b"


def test_a_takeover_waits_for_a_write_in_flight_under_the_old_epoch(db: Database) -> None:
    """The write holds the lease row FOR SHARE until it commits, so it cannot land after the
    takeover: either it commits first, or it sees the new epoch and is refused."""
    leases = SqlLeases(db)
    leases.acquire("controller", "a", "http://a", 60)
    taken: list[float] = []
    with db.session() as s:
        # The write's transaction starts while the lease is valid, and the lease expires
        # right after: the check judges by the transaction's own now(), its start, so it
        # passes and takes the row FOR SHARE; the takeover starts later and sees it expired.
        s.execute(text("SELECT 1"))
        with db.session() as other:
            other.execute(text("UPDATE leases SET expires_at = now()"))
        leases.check(s, "controller", "a", 1)

        def take() -> None:
            leases.acquire("controller", "b", "http://b", 60)
            taken.append(time.monotonic())

        thread = threading.Thread(target=take)
        thread.start()
        _wait_for_a_lock_wait(db)
        assert taken == []  # blocked behind the share lock
        s.execute(text("SELECT 1"))
        committed = time.monotonic()
    thread.join(30)
    assert taken and taken[0] >= committed
    info = leases.read("controller")
    assert info is not None and info.holder == "b" and info.epoch == 2
