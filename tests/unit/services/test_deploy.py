"""Deployment commands: deploy, undeploy, rollback and the registry's hooks, recording desired
state in a real releases table; a real controller over the fake backend reconciles it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plughost.domain.rollout import RolloutOptions
from plughost.domain.scope import PluginScope
from plughost.domain.states import Status
from plughost.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from plughost.persistence.db import Database
from plughost.persistence.tables import Plugin

from .conftest import NS_A, NS_B, OTHER_TENANT, DeploySide, add_plugin


def realtime(db: Database, version: str = "1.0.0") -> Plugin:
    return add_plugin(db, NS_A, "embed", version, has_realtime=True)


async def deployed(side: DeploySide, plugin_id: str) -> dict[str, Any]:
    body = side.commands.deploy(NS_A, plugin_id, None)
    rid = side.status.status(NS_A, plugin_id)["release_id"]
    assert (await side.settle(rid)).status is Status.DEPLOYED
    return body


def test_a_deploy_queues_a_release_and_answers_where_it_will_serve(
    deploy_side: DeploySide, db: Database
) -> None:
    realtime(db)
    body = deploy_side.commands.deploy(NS_A, "embed_1_0_0", "realtime")
    assert body["status"] == "queued" and body["queue_position"] == 1
    assert body["deployment_name"] == "custom_plugin_embed_1_0_0"
    assert body["route_prefix"] == "/inference/ns_a/custom_plugin_embed_1_0_0"
    assert body["alias_route"] == "/inference/ns_a/embed"
    assert body["status_endpoint"] == "/v1/namespaces/ns_a/plugins/embed_1_0_0/status"
    assert body["estimated_completion_seconds"] >= 1
    assert len(deploy_side.releases.with_status({Status.QUEUED})) == 1


def test_a_second_deploy_joins_the_queued_one(deploy_side: DeploySide, db: Database) -> None:
    realtime(db)
    deploy_side.commands.deploy(NS_A, "embed_1_0_0", None)
    again = deploy_side.commands.deploy(NS_A, "embed_1_0_0", None)
    assert again["message"] == "a deployment of this plugin is already queued; joined it"
    assert len(deploy_side.releases.with_status({Status.QUEUED})) == 1


def test_the_rollout_options_are_kept_with_the_release(
    deploy_side: DeploySide, db: Database
) -> None:
    realtime(db)
    options = RolloutOptions.from_json({"strategy": "canary"})
    body = deploy_side.commands.deploy(NS_A, "embed_1_0_0", None, options)
    assert body["deployment_method"] == "canary"


@pytest.mark.parametrize("kind", ["batch_only", "batch", None])
def test_a_batch_deploy_or_a_plugin_without_realtime_starts_nothing(
    deploy_side: DeploySide, db: Database, kind: str | None
) -> None:
    add_plugin(db, NS_A, "embed", has_realtime=kind is not None)
    body = deploy_side.commands.deploy(NS_A, "embed_1_0_0", kind)
    assert body["status"] == "deployed" and body["deployment_type"] == "batch_only"
    assert ("no realtime.py" in body["message"]) is (kind is None)
    assert deploy_side.releases.with_status({Status.QUEUED}) == []


@pytest.mark.parametrize("kind", ["gpu", "REALTIME", "realtime\n"])
def test_an_unknown_deployment_type_is_a_bad_request(
    deploy_side: DeploySide, db: Database, kind: str
) -> None:
    realtime(db)
    with pytest.raises(BadRequestError, match="unknown deployment_type"):
        deploy_side.commands.deploy(NS_A, "embed_1_0_0", kind)


@pytest.mark.parametrize("scope", [NS_B, OTHER_TENANT, PluginScope("org_b", "ns_a")])
def test_another_namespace_or_tenant_cannot_deploy_the_plugin(
    deploy_side: DeploySide, db: Database, scope: PluginScope
) -> None:
    realtime(db)
    with pytest.raises(NotFoundError):
        deploy_side.commands.deploy(scope, "embed_1_0_0", None)
    assert deploy_side.releases.with_status({Status.QUEUED}) == []


def test_a_deployed_plugin_is_serving_for_the_registry_hooks(
    deploy_side: DeploySide, db: Database
) -> None:
    plugin = realtime(db)

    async def body() -> None:
        await deployed(deploy_side, "embed_1_0_0")

    asyncio.run(body())
    hooks = deploy_side.commands
    assert hooks.serving_plugins("ns_a") == {plugin.id} and hooks.serving_plugins("ns_b") == set()
    state = hooks.state(plugin, "ns_a")
    assert state.deployed and state.deployment_name == "custom_plugin_embed_1_0_0"
    assert not hooks.state(plugin, None).deployed and hooks.serving_plugins(None) == set()


def test_undeploy_takes_the_replicas_down_and_says_so_once(
    deploy_side: DeploySide, db: Database
) -> None:
    realtime(db)

    async def body() -> tuple[dict[str, Any], dict[str, Any]]:
        await deployed(deploy_side, "embed_1_0_0")
        first = await deploy_side.commands.undeploy(NS_A, "embed_1_0_0")
        second = await deploy_side.commands.undeploy(NS_A, "embed_1_0_0")
        return first, second

    first, second = asyncio.run(body())
    assert first["deployment_removed"] is True and first["status"] == "not_deployed"
    assert second["deployment_removed"] is False and "had no live deployment" in second["message"]
    group = deploy_side.backend.group_of(
        deploy_side.status.status(NS_A, "embed_1_0_0")["release_id"]
    )
    assert group.stopped is not None  # drained and stopped before undeploy answered


def test_rollback_moves_the_alias_between_deployed_versions(
    deploy_side: DeploySide, db: Database
) -> None:
    realtime(db)
    realtime(db, "2.0.0")

    async def body() -> dict[str, Any]:
        await deployed(deploy_side, "embed_1_0_0")
        await deployed(deploy_side, "embed_2_0_0")
        return await deploy_side.commands.rollback("ns_a", "embed", "v1")

    answer = asyncio.run(body())
    assert answer["previous_version"] == "2.0.0" and answer["active_version"] == "1.0.0"
    assert answer["message"] == "/inference/ns_a/embed now reaches embed@1.0.0"
    one = deploy_side.status.status(NS_A, "embed_1_0_0")["release_id"]
    assert deploy_side.releases.alias("ns_a", "embed") == one


@pytest.mark.parametrize(("namespace_id", "version"), [("ns_a", "3.0.0"), ("ns_b", "1.0.0")])
def test_rollback_to_a_version_not_deployed_there_is_not_found(
    deploy_side: DeploySide, db: Database, namespace_id: str, version: str
) -> None:
    realtime(db)

    async def body() -> None:
        await deployed(deploy_side, "embed_1_0_0")
        with pytest.raises(NotFoundError, match="rollback switches between deployed versions"):
            await deploy_side.commands.rollback(namespace_id, "embed", version)

    asyncio.run(body())


def test_rollback_to_a_version_another_server_runs_is_unavailable_here(
    deploy_side: DeploySide, db: Database
) -> None:
    plugin = realtime(db)
    rid = deploy_side.releases.enqueue("ns_a", plugin, "queued").id
    for before, after in [
        (Status.QUEUED, Status.PENDING),
        (Status.PENDING, Status.IN_PROGRESS),
        (Status.IN_PROGRESS, Status.DEPLOYED),
    ]:
        assert deploy_side.releases.move(rid, before, after)  # written by another server
    with pytest.raises(ServiceUnavailableError):
        asyncio.run(deploy_side.commands.rollback("ns_a", "embed", "1.0.0"))


def test_undeploying_a_queued_release_cancels_it_but_removes_no_deployment(
    deploy_side: DeploySide, db: Database
) -> None:
    realtime(db)
    deploy_side.commands.deploy(NS_A, "embed_1_0_0", None)
    answer = asyncio.run(deploy_side.commands.undeploy(NS_A, "embed_1_0_0"))
    assert answer["deployment_removed"] is False
    assert deploy_side.releases.with_status({Status.QUEUED}) == []
    assert deploy_side.status.status(NS_A, "embed_1_0_0")["status"] == "not_deployed"
