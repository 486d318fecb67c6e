"""Deployment status: the body clients poll, from the release board, the plugin lookups and
the controller's groups (a real controller over the fake backend), and its ETA."""

from __future__ import annotations

import asyncio

import pytest

from plughost.domain.scope import PluginScope
from plughost.domain.states import Status
from plughost.errors import NotFoundError
from plughost.persistence.db import Database
from plughost.persistence.tables import Plugin
from plughost.services.status import RESTORING_MESSAGE

from .conftest import NS_A, NS_B, OTHER_TENANT, DeploySide, add_plugin


def realtime(db: Database, name: str = "embed") -> Plugin:
    return add_plugin(db, NS_A, name, has_realtime=True)


def deployed_elsewhere(side: DeploySide, plugin: Plugin) -> int:
    """A release another server deployed: in the table, with no replicas nor route here."""
    rid = side.releases.enqueue("ns_a", plugin, "queued").id
    steps = [
        (Status.QUEUED, Status.PENDING),
        (Status.PENDING, Status.IN_PROGRESS),
        (Status.IN_PROGRESS, Status.DEPLOYED),
    ]
    for before, after in steps:
        assert side.releases.move(rid, before, after, "serving")
    return rid


def test_a_plugin_never_deployed_says_so(deploy_side: DeploySide, db: Database) -> None:
    realtime(db)
    add_plugin(db, NS_A, "offline")
    body = deploy_side.status.status(NS_A, "embed_1_0_0")
    assert body["status"] == "not_deployed" and body["deployed"] is False
    assert body["message"] == "Plugin has never been deployed."
    assert "release_id" not in body and "route_prefix" not in body
    batch = deploy_side.status.status(NS_A, "offline_1_0_0")
    assert batch["message"] == "Plugin has no realtime.py: batch only."
    assert batch["realtime_enabled"] is False


def test_a_queued_release_shows_its_place_in_the_queue_and_an_eta(
    deploy_side: DeploySide, db: Database
) -> None:
    realtime(db)
    realtime(db, "other")
    deploy_side.commands.deploy(NS_A, "other_1_0_0", None)
    deploy_side.commands.deploy(NS_A, "embed_1_0_0", None)
    body = deploy_side.status.status(NS_A, "embed_1_0_0")
    assert body["status"] == "queued" and body["queue_position"] == 2
    assert body["route_prefix"] == "/inference/ns_a/custom_plugin_embed_1_0_0"
    # one rollout at a time, 7 s each before any was measured: its turn comes second
    assert body["estimated_completion_seconds"] == 14


def test_a_deployed_release_shows_its_routes_and_replicas(
    deploy_side: DeploySide, db: Database
) -> None:
    realtime(db)

    async def body() -> None:
        deploy_side.commands.deploy(NS_A, "embed_1_0_0", None)
        rid = deploy_side.status.status(NS_A, "embed_1_0_0")["release_id"]
        assert (await deploy_side.settle(rid)).status is Status.DEPLOYED

    asyncio.run(body())
    status = deploy_side.status.status(NS_A, "embed_1_0_0")
    assert status["status"] == "deployed" and status["deployed"] is True
    assert status["estimated_completion_seconds"] == 0
    assert status["alias_route"] == "/inference/ns_a/embed" and "deployed_at" in status
    assert status["replicas"]["ready"] >= 1 and "queue_position" not in status


def test_a_release_deployed_in_the_table_without_a_route_here_is_being_restored(
    deploy_side: DeploySide, db: Database
) -> None:
    deployed_elsewhere(deploy_side, realtime(db))
    body = deploy_side.status.status(NS_A, "embed_1_0_0")
    assert body["status"] == "in_progress" and body["message"] == RESTORING_MESSAGE
    assert body["deployed"] is False and "replicas" not in body
    assert body["route_prefix"] == "/inference/ns_a/custom_plugin_embed_1_0_0"


def test_a_failed_release_shows_its_error_and_no_route(
    deploy_side: DeploySide, db: Database
) -> None:
    plugin = realtime(db)
    rid = deploy_side.releases.enqueue("ns_a", plugin, "queued").id
    deploy_side.releases.move(rid, Status.QUEUED, Status.PENDING)
    deploy_side.releases.move(rid, Status.PENDING, Status.FAILED, error="ImportError: torch")
    body = deploy_side.status.status(NS_A, "embed_1_0_0")
    assert body["status"] == "failed" and body["error"] == "ImportError: torch"
    assert "route_prefix" not in body and "estimated_completion_seconds" not in body


def test_a_superseded_release_reads_as_not_deployed(deploy_side: DeploySide, db: Database) -> None:
    rid = deployed_elsewhere(deploy_side, realtime(db))
    deploy_side.releases.move(rid, Status.DEPLOYED, Status.SUPERSEDED, "replaced")
    assert deploy_side.status.status(NS_A, "embed_1_0_0")["status"] == "not_deployed"


@pytest.mark.parametrize("scope", [NS_B, OTHER_TENANT, PluginScope("org_b", "ns_a")])
def test_another_namespace_or_tenant_gets_no_status(
    deploy_side: DeploySide, db: Database, scope: PluginScope
) -> None:
    realtime(db)
    deploy_side.commands.deploy(NS_A, "embed_1_0_0", None)
    with pytest.raises(NotFoundError):
        deploy_side.status.status(scope, "embed_1_0_0")
    assert deploy_side.status.cached_status(scope, "embed_1_0_0") is None


def test_memory_answers_once_a_read_filled_it(deploy_side: DeploySide, db: Database) -> None:
    realtime(db)
    assert deploy_side.status.cached_status(NS_A, "embed_1_0_0") is None  # nothing read yet
    deploy_side.commands.deploy(NS_A, "embed_1_0_0", None)
    read = deploy_side.status.status(NS_A, "embed_1_0_0")
    assert deploy_side.status.cached_status(NS_A, "embed_1_0_0") == read


def test_a_deleted_plugins_cached_lookup_is_forgotten(
    deploy_side: DeploySide, db: Database
) -> None:
    plugin = realtime(db)
    deploy_side.status.status(NS_A, "embed_1_0_0")
    deploy_side.commands.plugin_removed(plugin.id, deleted=True)
    assert deploy_side.status.cached_status(NS_A, "embed_1_0_0") is None
