"""Observation: a plugin id's deployment history and its logs, over a real database (releases
written through the one compare-and-set door) and a log store in a tmp folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plughost.domain.scope import PluginScope
from plughost.domain.states import Status
from plughost.errors import BadRequestError, NotFoundError
from plughost.logs.store import LogStore
from plughost.persistence.db import Database
from plughost.persistence.releases import Releases
from plughost.persistence.tables import NamespacePlugin, Plugin
from plughost.services.observe import Observe

from .conftest import NS_A, NS_B, ORG_LEVEL, OTHER_TENANT, add_plugin

T0 = 1_700_000_000.0  # the log store's clock starts here (2023-11-14T22:13:20Z)


class StepClock:
    """Each reading is one second after the previous one."""

    def __init__(self) -> None:
        self.now = T0 - 1.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def releases(db: Database) -> Releases:
    return Releases(db)


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[LogStore]:
    store = LogStore(tmp_path / "logs", clock=StepClock())
    yield store
    store.close()


@pytest.fixture
def observe(db: Database, logs: LogStore) -> Observe:
    return Observe(db, logs)


def deployed(releases: Releases, plugin: Plugin, namespace_id: str = "ns_a") -> int:
    view = releases.enqueue(namespace_id, plugin, "queued")
    assert releases.move(view.id, Status.QUEUED, Status.PENDING, "starting")
    assert releases.move(view.id, Status.PENDING, Status.IN_PROGRESS, "replicas starting")
    assert releases.move(
        view.id, Status.IN_PROGRESS, Status.DEPLOYED, "serving", alias_reason="deploy"
    )
    return view.id


# -- history -----------------------------------------------------------------------------------
def test_history_lists_releases_newest_first_with_their_steps_and_the_alias(
    observe: Observe, db: Database, releases: Releases
) -> None:
    v1 = add_plugin(db, NS_A, "embed")
    v2 = add_plugin(db, NS_A, "embed", "2.0.0")
    first = deployed(releases, v1)
    second = deployed(releases, v2)
    assert releases.move(first, Status.DEPLOYED, Status.SUPERSEDED, "replaced")
    failed = releases.enqueue("ns_a", v1, "queued again").id
    assert releases.move(failed, Status.QUEUED, Status.PENDING)
    assert releases.move(failed, Status.PENDING, Status.FAILED, error="boom")

    body = observe.history(NS_A, "embed_1_0_0", limit=10)
    assert [(d["release_id"], d["status"], d["outcome"]) for d in body["deployments"]] == [
        (failed, "failed", "failed"),
        (first, "superseded", "superseded"),
    ]
    steps = body["deployments"][1]["events"]
    assert [(e["from"], e["to"]) for e in steps] == [
        (None, "queued"),
        ("queued", "pending"),
        ("pending", "in_progress"),
        ("in_progress", "deployed"),
        ("deployed", "superseded"),
    ]
    assert steps[0]["duration_s"] is None and all(e["duration_s"] >= 0 for e in steps[1:])
    assert body["deployments"][0]["error"] == "boom"
    assert body["alias"] == {
        "name": "embed",
        "route": "/inference/ns_a/embed",
        "release_id": second,
        "version": "2.0.0",
    }
    assert [(m["from_version"], m["to_version"], m["reason"]) for m in body["alias_moves"]] == [
        ("1.0.0", "2.0.0", "deploy"),
        (None, "1.0.0", "deploy"),
    ]


def test_a_release_on_its_way_is_running_and_history_respects_the_limit(
    observe: Observe, db: Database, releases: Releases
) -> None:
    plugin = add_plugin(db, NS_A, "embed")
    ids = [releases.enqueue("ns_a", plugin, "queued").id for _ in range(3)]
    body = observe.history(NS_A, "embed_1_0_0", limit=2)
    assert [d["release_id"] for d in body["deployments"]] == ids[:0:-1]
    assert {d["outcome"] for d in body["deployments"]} == {"running"}
    assert body["alias"] is None and body["alias_moves"] == []


def test_history_of_one_namespace_leaves_out_the_others(
    observe: Observe, db: Database, releases: Releases
) -> None:
    shared = add_plugin(db, ORG_LEVEL, "shared")
    with db.session() as s:
        s.add_all(
            [
                NamespacePlugin(namespace_id="ns_a", plugin_pk=shared.id),
                NamespacePlugin(namespace_id="ns_b", plugin_pk=shared.id),
            ]
        )
    deployed(releases, shared, "ns_b")
    body = observe.history(NS_A, "shared_1_0_0", limit=10)
    assert body["namespace_id"] == "ns_a" and body["deployments"] == []
    assert body["alias"] is None
    assert len(observe.history(NS_B, "shared_1_0_0", limit=10)["deployments"]) == 1


@pytest.mark.parametrize("limit", [0, -1, 201])
def test_history_limits_outside_1_to_200_are_a_bad_request(observe: Observe, limit: int) -> None:
    with pytest.raises(BadRequestError, match="between 1 and 200") as err:
        observe.history(NS_A, "embed_1_0_0", limit)
    assert err.value.status_code == 400


@pytest.mark.parametrize("scope", [NS_B, OTHER_TENANT, PluginScope("org_b", "ns_a")])
def test_another_namespace_or_tenant_sees_no_history_nor_logs(
    observe: Observe, db: Database, scope: PluginScope
) -> None:
    add_plugin(db, NS_A, "embed")
    with pytest.raises(NotFoundError):
        observe.history(scope, "embed_1_0_0", 10)
    with pytest.raises(NotFoundError):
        observe.logs_body(scope, "embed_1_0_0", None, 10, None)


# -- logs --------------------------------------------------------------------------------------
def test_logs_are_the_plugins_newest_lines_across_its_releases(
    observe: Observe, db: Database, releases: Releases, logs: LogStore
) -> None:
    plugin = add_plugin(db, NS_A, "embed")
    other = add_plugin(db, NS_A, "other")
    first = releases.enqueue("ns_a", plugin, "q").id
    theirs = releases.enqueue("ns_a", other, "q").id
    second = releases.enqueue("ns_a", plugin, "q").id
    logs.append(first, "r0", "stdout", "one")
    logs.append(theirs, "r0", "stdout", "not mine")
    logs.append(second, "r1", "stderr", "two")
    logs.append(second, "r1", "stdout", "three")

    body = observe.logs_body(NS_A, "embed_1_0_0", None, 10, None)
    assert [(x["release_id"], x["line"]) for x in body["lines"]] == [
        (first, "one"),
        (second, "two"),
        (second, "three"),
    ]
    assert body["truncated"] is False
    assert body["lines"][0]["time"] == "2023-11-14T22:13:20.000000Z"
    assert body["next_since"] == body["lines"][-1]["time"]

    newest = observe.logs_body(NS_A, "embed_1_0_0", None, 2, None)
    assert [x["line"] for x in newest["lines"]] == ["two", "three"] and newest["truncated"]
    only_first = observe.logs_body(NS_A, "embed_1_0_0", None, 10, first)
    assert [x["line"] for x in only_first["lines"]] == ["one"]
    assert observe.logs_body(NS_A, "embed_1_0_0", None, 10, theirs)["lines"] == []


def test_logs_since_a_cursor_are_the_lines_after_it_oldest_first(
    observe: Observe, db: Database, releases: Releases, logs: LogStore
) -> None:
    plugin = add_plugin(db, NS_A, "embed")
    rid = releases.enqueue("ns_a", plugin, "q").id
    for n in range(5):
        logs.append(rid, "r0", "stdout", f"line {n}")
    cursor = "2023-11-14T22:13:21.000000Z"  # the time of "line 1"
    after = observe.logs_body(NS_A, "embed_1_0_0", cursor, 2, None)
    assert [x["line"] for x in after["lines"]] == ["line 2", "line 3"] and after["truncated"]
    rest = observe.logs_body(NS_A, "embed_1_0_0", after["next_since"], 2, None)
    assert [x["line"] for x in rest["lines"]] == ["line 4"] and not rest["truncated"]
    done = observe.logs_body(NS_A, "embed_1_0_0", rest["next_since"], 2, None)
    assert done["lines"] == [] and done["next_since"] == rest["next_since"]


@pytest.mark.parametrize(
    ("since", "limit"), [("yesterday", 10), ("10x", 10), ("", 10), (None, 0), (None, 5001)]
)
def test_a_bad_since_or_limit_is_a_bad_request(
    observe: Observe, db: Database, since: str | None, limit: int
) -> None:
    add_plugin(db, NS_A, "embed")
    with pytest.raises(BadRequestError):
        observe.logs_body(NS_A, "embed_1_0_0", since, limit, None)


def test_without_a_log_store_the_logs_are_empty(db: Database, releases: Releases) -> None:
    plugin = add_plugin(db, NS_A, "embed")
    releases.enqueue("ns_a", plugin, "q")
    body = Observe(db, None).logs_body(NS_A, "embed_1_0_0", None, 10, None)
    assert body == {
        "plugin_id": "embed_1_0_0",
        "namespace_id": "ns_a",
        "lines": [],
        "truncated": False,
        "next_since": None,
    }


def test_only_the_newest_releases_files_are_read(
    observe: Observe, db: Database, releases: Releases
) -> None:
    plugin = add_plugin(db, NS_A, "embed")
    ids = [releases.enqueue("ns_a", plugin, "q").id for _ in range(55)]
    key = observe.plugin(NS_A, "embed_1_0_0")
    assert observe.release_ids(key) == ids[-50:]
