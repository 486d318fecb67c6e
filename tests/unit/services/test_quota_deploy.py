"""Deploys against a namespace's replicas and memory quotas (issue 28, item 2), recorded in a
real releases table and reconciled by a real controller over the fake backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plughost.domain.quotas import QuotaExceededError
from plughost.domain.states import Status
from plughost.persistence.db import Database
from plughost.persistence.policies import PolicyRows
from plughost.persistence.tables import Plugin
from plughost.services.policies import PolicyBook

from .conftest import NS_A, NS_B, DeploySide, add_plugin


def serving(
    db: Database, name: str, serve_config: dict[str, Any], version: str = "1.0.0"
) -> Plugin:
    manifest = {"feature_extractor_name": name, "version": version, "serve_config": serve_config}
    return add_plugin(db, NS_A, name, version, has_realtime=True, manifest=manifest)


@pytest.fixture
def book(deploy_side: DeploySide, db: Database) -> PolicyBook:
    policies = PolicyBook(PolicyRows(db))
    deploy_side.commands.policies = policies
    return policies


def deploy_and_settle(side: DeploySide, plugin_id: str) -> None:
    side.commands.deploy(NS_A, plugin_id, None)
    rid = side.status.status(NS_A, plugin_id)["release_id"]
    assert asyncio.run(side.settle(rid)).status is Status.DEPLOYED


def test_a_second_plugin_past_max_replicas_is_refused_naming_the_quota(
    deploy_side: DeploySide, db: Database, book: PolicyBook
) -> None:
    serving(db, "first", {"num_replicas": 2})
    serving(db, "second", {"min_replicas": 1, "max_replicas": 4})
    book.put("ns_a", {"max_replicas": 2})
    deploy_and_settle(deploy_side, "first_1_0_0")
    with pytest.raises(QuotaExceededError) as caught:
        deploy_side.commands.deploy(NS_A, "second_1_0_0", None)
    assert caught.value.status_code == 409
    assert caught.value.message.startswith("namespace quota max_replicas=2 reached")
    assert book.rejected[("ns_a", "max_replicas")] == 1
    assert deploy_side.releases.with_status({Status.QUEUED}) == []  # nothing was queued
    # the same plugin again replaces its release: still allowed at the quota
    again = deploy_side.commands.deploy(NS_A, "first_1_0_0", None)
    assert again["status"] == "queued"
    # another namespace has its own count
    add_plugin(db, NS_B, "second", has_realtime=True, manifest={"serve_config": {}})
    assert deploy_side.commands.deploy(NS_B, "second_1_0_0", None)["status"] == "queued"


def test_queued_releases_count_and_raising_the_quota_lets_the_deploy_through(
    deploy_side: DeploySide, db: Database, book: PolicyBook
) -> None:
    serving(db, "first", {})
    serving(db, "second", {})
    book.put("ns_a", {"max_replicas": 1})
    deploy_side.commands.deploy(NS_A, "first_1_0_0", None)  # queued, not started yet
    with pytest.raises(QuotaExceededError, match="max_replicas=1"):
        deploy_side.commands.deploy(NS_A, "second_1_0_0", None)
    book.put("ns_a", {"max_replicas": 2})
    assert deploy_side.commands.deploy(NS_A, "second_1_0_0", None)["status"] == "queued"


def test_the_memory_quota_counts_memory_gb_times_replicas_or_the_default(
    deploy_side: DeploySide, db: Database, book: PolicyBook
) -> None:
    serving(db, "big", {"num_replicas": 2, "memory_gb": 1.5})  # 3072 MB
    serving(db, "plain", {})  # one replica of the default 2 GB
    book.put("ns_a", {"max_memory_mb": 5000})
    deploy_side.commands.deploy(NS_A, "big_1_0_0", None)
    with pytest.raises(QuotaExceededError) as caught:
        deploy_side.commands.deploy(NS_A, "plain_1_0_0", None)
    assert (caught.value.details or {})["quota"] == "max_memory_mb"
    assert (caught.value.details or {})["in_use"] == 3072


def test_without_a_policy_nothing_is_counted(
    deploy_side: DeploySide, db: Database, book: PolicyBook
) -> None:
    for name in ("aaa", "bbb", "ccc"):
        serving(db, name, {"num_replicas": 16, "memory_gb": 64})
        assert deploy_side.commands.deploy(NS_A, f"{name}_1_0_0", None)["status"] == "queued"


def test_on_ray_an_autoscaling_release_counts_at_its_max_replicas(
    deploy_side: DeploySide, db: Database, book: PolicyBook
) -> None:
    # Ray Serve's autoscaler knows no quota: what it may reach is what the deploy counts
    serving(db, "elastic", {"min_replicas": 1, "max_replicas": 4})
    book.put("ns_a", {"max_replicas": 3})
    deploy_side.commands.settings.backend = "ray"
    with pytest.raises(QuotaExceededError, match="max_replicas=3") as caught:
        deploy_side.commands.deploy(NS_A, "elastic_1_0_0", None)
    assert (caught.value.details or {})["requested"] == 4
    # the local backend clamps its autoscaler instead, so such a release counts at 1
    serving(db, "elastic_local", {"min_replicas": 1, "max_replicas": 4})
    deploy_side.commands.settings.backend = "local"
    assert deploy_side.commands.deploy(NS_A, "elastic_local_1_0_0", None)["status"] == "queued"
