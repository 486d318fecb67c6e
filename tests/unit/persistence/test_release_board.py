"""The status read model: the board must always agree with the releases table.

Runs on a real database (SQLite, and PostgreSQL when selected) through the same Releases
object the server uses; the truth each check compares against is a fresh SQL query.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from support import create_pg_database, drop_pg_database

from plughost.domain.release import ReleaseView
from plughost.domain.states import TRANSITIONS, Status
from plughost.persistence.board import PluginReleases, ReleaseBoard
from plughost.persistence.db import Database
from plughost.persistence.releases import Releases
from plughost.persistence.tables import Namespace, Organization, Plugin
from plughost.timeutil import utcnow


@pytest.fixture
def db(db_kind: str, tmp_path: Path) -> Iterator[Database]:
    url = create_pg_database() if db_kind == "postgres" else f"sqlite:///{tmp_path / 'db.sqlite'}"
    database = Database(url)
    database.migrate()
    with database.session() as s:
        s.add(Organization(id="org", name="org"))
        s.flush()
        s.add_all([Namespace(id=ns, organization_id="org", name=ns) for ns in ("ns_a", "ns_b")])
    try:
        yield database
    finally:
        database.dispose()
        if db_kind == "postgres":
            drop_pg_database(url)


def _plugin(db: Database, name: str) -> Plugin:
    with db.session() as s:
        row = Plugin(
            plugin_id=f"{name}_1_0_0", organization_id="org", scope="", name=name,
            version="1.0.0", storage_key=f"k/{name}", archive_url="", code_hash="",
            validation_status="passed", validation_errors=[], security_scan_passed=True,
            has_realtime=True, manifest={},
        )
        s.add(row)
        s.flush()
        s.expunge(row)
        return row


def _truth(releases: Releases, ns: str, pk: int) -> PluginReleases:
    return PluginReleases(
        releases.latest(ns, pk), tuple(releases.of_plugin(ns, pk, {Status.DEPLOYED}))
    )


def _count_sql(db: Database) -> list[str]:
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda conn, cur, statement, *a: seen.append(statement))
    return seen


def test_a_loaded_plugin_is_answered_without_sql_and_follows_every_move(db: Database) -> None:
    releases = Releases(db)
    plugin = _plugin(db, "alpha")
    first = releases.enqueue("ns_a", plugin, "queued")
    assert releases.plugin_releases("ns_a", plugin.id).latest == first  # loads the key
    statements = _count_sql(db)
    assert releases.plugin_releases("ns_a", plugin.id).latest == first
    assert releases.queue_position_now(first.id) == 1  # loads the queue
    n = len(statements)
    assert releases.queue_position_now(first.id) == 1
    assert len(statements) == n, "a loaded queue must not query again"
    releases.plugin_releases("ns_a", plugin.id)
    assert not [q for q in statements[n:] if q.lstrip().upper().startswith("SELECT")]

    assert releases.move(first.id, Status.QUEUED, Status.PENDING)
    assert releases.move(first.id, Status.PENDING, Status.IN_PROGRESS, message="starting")
    assert releases.move(
        first.id, Status.IN_PROGRESS, Status.DEPLOYED, duration_s=0.4, deployed_at=utcnow()
    )
    board = releases.plugin_releases("ns_a", plugin.id)
    assert board == _truth(releases, "ns_a", plugin.id)
    assert board.latest is not None and board.latest.status is Status.DEPLOYED
    assert board.latest.message == "starting"
    assert [r.id for r in board.deployed] == [first.id]
    # a failed compare-and-set changes nothing
    assert not releases.move(first.id, Status.QUEUED, Status.PENDING)
    assert releases.plugin_releases("ns_a", plugin.id) == _truth(releases, "ns_a", plugin.id)


def test_board_agrees_with_the_table_through_random_histories(db: Database) -> None:
    rng = random.Random(7)
    releases = Releases(db)
    plugins = [_plugin(db, name) for name in ("p0", "p1", "p2")]
    namespaces = ("ns_a", "ns_b")
    live: list[ReleaseView] = []
    for step in range(120):
        if not live or rng.random() < 0.3:
            plugin, ns = rng.choice(plugins), rng.choice(namespaces)
            live.append(releases.enqueue(ns, plugin, f"step {step}"))
        else:
            rel = rng.choice(live)
            current = releases.get(rel.id)
            assert current is not None
            targets = sorted(TRANSITIONS[current.status])
            if not targets:
                live.remove(rel)
                continue
            to = rng.choice(targets)
            extra = (
                {"duration_s": rng.uniform(0.1, 3.0), "deployed_at": utcnow()}
                if to is Status.DEPLOYED else {}
            )
            assert releases.move(rel.id, current.status, to, message=f"step {step}", **extra)
        if rng.random() < 0.5:  # read some keys now, so later writes hit loaded entries
            plugin, ns = rng.choice(plugins), rng.choice(namespaces)
            assert releases.plugin_releases(ns, plugin.id) == _truth(releases, ns, plugin.id)
        queued = [r.id for r in releases.with_status({Status.QUEUED})]
        for rid in queued:
            assert releases.queue_position_now(rid) == releases.queue_position(rid)
        for name in ("p0", None):
            assert list(releases.recent_durations_now(name)) == releases.recent_durations(name)
    for plugin in plugins:
        for ns in namespaces:
            assert releases.plugin_releases(ns, plugin.id) == _truth(releases, ns, plugin.id)


def test_durations_are_kept_in_the_order_rollouts_finish(db: Database) -> None:
    releases = Releases(db)
    plugin = _plugin(db, "order")
    first = releases.enqueue("ns_a", plugin, "queued")
    second = releases.enqueue("ns_b", plugin, "queued")
    assert releases.recent_durations_now("order") == ()  # loaded, empty
    for rel, took in ((second, 2.0), (first, 1.0)):  # the younger release finishes first
        releases.move(rel.id, Status.QUEUED, Status.PENDING)
        releases.move(rel.id, Status.PENDING, Status.IN_PROGRESS)
        releases.move(rel.id, Status.IN_PROGRESS, Status.DEPLOYED,
                      duration_s=took, deployed_at=utcnow())
    assert releases.recent_durations_now("order") == (1.0, 2.0)
    assert releases.recent_durations("order") == [1.0, 2.0]


def test_deleting_a_plugin_forgets_its_releases(db: Database) -> None:
    releases = Releases(db)
    plugin = _plugin(db, "gone")
    rel = releases.enqueue("ns_a", plugin, "queued")
    assert releases.plugin_releases("ns_a", plugin.id).latest == rel
    assert releases.queue_position_now(rel.id) == 1
    with db.session() as s:
        s.delete(s.get(Plugin, plugin.id))  # ON DELETE CASCADE drops the releases
    releases.forget_plugin(plugin.id)
    assert releases.plugin_releases("ns_a", plugin.id) == PluginReleases(None, ())
    other = releases.enqueue("ns_a", _plugin(db, "next"), "queued")
    assert releases.queue_position_now(other.id) == 1


def test_a_load_that_raced_a_write_is_not_installed() -> None:
    board = ReleaseBoard()
    key = ("ns", 1)
    stale = PluginReleases(None, ())
    stamp = board.plugin_stamp(key)
    view = _view(10, Status.QUEUED)
    board.changed(view)  # a write lands while the load was reading
    board.install_plugin(key, stamp, stale)
    assert board.plugin(key) is None, "the stale read must not be installed"
    board.install_plugin(key, board.plugin_stamp(key), PluginReleases(view, ()))
    assert board.plugin(key) == PluginReleases(view, ())

    q_stamp = board.queue_stamp()
    board.changed(_view(11, Status.QUEUED))
    board.install_queue(q_stamp, [10])
    assert board.queue_position(11) is None
    board.install_queue(board.queue_stamp(), [10, 11])
    assert board.queue_position(11) == 2

    d_stamp = board.durations_stamp()
    board.changed(_view(10, Status.DEPLOYED), duration_s=1.0)
    board.install_durations("p", d_stamp, [5.0])
    assert board.durations("p") is None


def _view(release_id: int, status: Status) -> ReleaseView:
    return ReleaseView(
        id=release_id, namespace_id="ns", plugin_pk=1, plugin_id="p_1_0_0", name="p",
        version="1.0.0", status=status, message=None, error=None, queued_at=utcnow(),
        started_at=None, deployed_at=None, finished_at=None,
    )


def test_a_plugin_lookup_that_raced_a_removal_is_not_cached(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plughost.domain.scope import PluginScope
    from plughost.services import lookup as module
    from plughost.services.cache import NotCached

    plugin = _plugin(db, "racy")
    lookup = module.PluginLookup(db)
    scope = PluginScope(organization_id="org", namespace_id=None)
    real = module.find_plugin

    def find_then_removed(s: object, sc: PluginScope, pid: str) -> Plugin:
        row = real(s, sc, pid)  # type: ignore[arg-type]
        lookup.forget(plugin.id)  # a removal lands while the lookup runs
        return row

    monkeypatch.setattr(module, "find_plugin", find_then_removed)
    lookup.load(scope, plugin.plugin_id)
    with pytest.raises(NotCached):
        lookup.ref(scope, plugin.plugin_id, cached_only=True)
    monkeypatch.setattr(module, "find_plugin", real)
    lookup.load(scope, plugin.plugin_id)
    assert lookup.ref(scope, plugin.plugin_id, cached_only=True).pk == plugin.id
