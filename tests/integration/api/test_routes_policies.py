"""plughost.api.routes_policies (GET/PUT /v1/admin/namespaces/{ns}/policy) and the quotas it
sets, enforced on the app's own routes (issue 28, item 2): realtime calls past a namespace's
or a key's rate (429 with Retry-After, on both inference routes), a deploy past
max_replicas (409), a batch submission past max_batch_jobs (429), and /metrics per
namespace. Quotas set on the shared namespace are cleared again before each test ends."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from inproc import InProcessServer
from support import unique_name

from .conftest import Deployed, Tenant
from .helpers import NS, error, runtime

ALL_CLEARED = {
    "max_replicas": None,
    "max_memory_mb": None,
    "max_batch_jobs": None,
    "requests_per_second": None,
    "key_requests_per_second": None,
    "egress_allow": None,
}


def policy_url(ns: str) -> str:
    return f"/v1/admin/namespaces/{ns}/policy"


@pytest.fixture
def shared_quota(app: InProcessServer) -> Iterator[None]:
    """Clears every quota of the shared namespace after the test."""
    try:
        yield
    finally:
        with app.client() as c:
            assert c.put(policy_url(NS), json=ALL_CLEARED).status_code == 200


def put(c: httpx.Client, ns: str, **fields: Any) -> dict[str, Any]:
    resp = c.put(policy_url(ns), json=fields)
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["policy"])


def test_an_admin_reads_and_sets_a_policy_and_null_clears_a_field(app: InProcessServer) -> None:
    ns = runtime(app).accounts.create_namespace("quotas", namespace_id=unique_name("ns"))
    ns_id = ns["namespace_id"]
    with app.client() as c:
        empty = c.get(policy_url(ns_id)).json()["policy"]
        assert {k: v for k, v in empty.items() if k not in ("namespace_id", "updated_at")} == {
            **ALL_CLEARED,
            "egress_allow": [],
        }
        stored = put(
            c,
            ns_id,
            max_replicas=2,
            requests_per_second=50,
            egress_allow=["API.example.com:443", "*.cdn.example"],
        )
        assert stored["max_replicas"] == 2 and stored["requests_per_second"] == 50.0
        assert stored["egress_allow"] == ["api.example.com:443", "*.cdn.example"]
        cleared = put(c, ns_id, max_replicas=None)
        assert cleared["max_replicas"] is None and cleared["requests_per_second"] == 50.0
        assert c.get(policy_url(ns_id)).json()["policy"] == cleared
    book = runtime(app).policies
    assert book.egress_allow(ns_id) == ("api.example.com:443", "*.cdn.example")


def test_bad_bodies_unknown_namespaces_and_non_admin_keys_are_refused(
    app: InProcessServer, limited: Tenant, outsider: Tenant
) -> None:
    with app.client() as c:
        bad = error(
            c.put(policy_url(NS), json={"egress_allow": ["x.example:99999"]}),
            422,
            "ValidationError",
        )
        assert bad["details"]["field"] == "egress_allow"
        error(c.put(policy_url(NS), json={"max_replicas": -1}), 422, "ValidationError")
        error(c.put(policy_url(NS), json={"surprise": 1}), 422, "ValidationError")
        error(c.put(policy_url(NS), json=[1]), 422, "ValidationError")
        error(c.put(policy_url(NS), content=b"{"), 400, "BadRequestError")
        error(c.get(policy_url("ns_nowhere")), 404, "NotFoundError")
        error(c.put(policy_url("ns_nowhere"), json={"max_replicas": 1}), 404, "NotFoundError")
    for key in (limited.key, outsider.key):
        with app.client(key) as c:
            error(c.get(policy_url(NS)), 403, "ForbiddenError")
            error(
                c.put(policy_url(limited.namespace_id), json={"max_replicas": 0}),
                403,
                "ForbiddenError",
            )
    with app.anonymous() as c:
        error(c.get(policy_url(NS)), 401, "AuthenticationError")
    assert runtime(app).policies.policy(limited.namespace_id).max_replicas is None


def call(c: httpx.Client, deployed: Deployed) -> httpx.Response:
    return c.post(deployed.route_prefix, json={"inputs": {"text": "hi"}})


def test_a_namespace_rate_answers_429_with_retry_after_on_both_inference_routes(
    app: InProcessServer, deployed: Deployed, shared_quota: None
) -> None:
    with app.client() as c:
        assert call(c, deployed).status_code == 200
        put(c, NS, requests_per_second=0.01)  # a burst of one call, then one per 100 s
        assert call(c, deployed).status_code == 200
        refused = call(c, deployed)
        body = error(refused, 429, "QuotaExceededError")
        assert body["message"].startswith("namespace quota requests_per_second=0.01 reached")
        assert body["details"] == {
            "namespace_id": NS,
            "quota": "requests_per_second",
            "limit": 0.01,
        }
        assert refused.headers["Retry-After"] == "5"
        by_name = c.post(
            "/v1/inference",
            headers={"X-Namespace": NS},
            json={"inference_name": deployed.plugin_id, "inputs": {"text": "x"}},
        )
        error(by_name, 429, "QuotaExceededError")
        metrics = c.get("/metrics").text
        assert (
            f'plughost_namespace_quota_rejections_total{{namespace="{NS}",'
            'quota="requests_per_second"} 2.0'
        ) in metrics
        assert f'plughost_namespace_request_counter_total{{namespace="{NS}"}}' in metrics
        put(c, NS, requests_per_second=None)
        assert call(c, deployed).status_code == 200


def test_a_key_rate_holds_each_key_apart(
    app: InProcessServer, deployed: Deployed, shared_quota: None
) -> None:
    other_key, _ = runtime(app).accounts.create_key(label="second key")
    with app.client() as c:
        put(c, NS, key_requests_per_second=0.01)
        assert call(c, deployed).status_code == 200
        body = error(call(c, deployed), 429, "QuotaExceededError")
        assert body["details"]["quota"] == "key_requests_per_second"
    with app.client(other_key) as c:
        assert call(c, deployed).status_code == 200  # a bucket of its own


def test_a_deploy_past_max_replicas_is_a_409_naming_the_quota(
    app: InProcessServer, deployed: Deployed, shared_quota: None
) -> None:
    with app.client() as c:
        put(c, NS, max_replicas=0)
        resp = c.post(f"/v1/namespaces/{NS}/plugins/{deployed.plugin_id}/deploy")
        body = error(resp, 409, "QuotaExceededError")
        assert body["message"].startswith("namespace quota max_replicas=0 reached")
        assert body["details"]["quota"] == "max_replicas"
        status = c.get(f"/v1/namespaces/{NS}/plugins/{deployed.plugin_id}/status").json()
        assert status["status"] == "deployed"  # nothing was queued: it still serves


def test_a_batch_submission_past_max_batch_jobs_is_a_429(
    app: InProcessServer, deployed: Deployed, shared_quota: None
) -> None:
    rows = ("rows.jsonl", b'{"text": "a"}\n', "application/x-ndjson")
    url = f"/v1/namespaces/{NS}/plugins/{deployed.plugin_id}/batches"
    with app.client() as c:
        put(c, NS, max_batch_jobs=0)
        refused = c.post(url, files={"file": rows})
        body = error(refused, 429, "QuotaExceededError")
        assert body["details"]["quota"] == "max_batch_jobs"
        assert refused.headers["Retry-After"] == "5"
        put(c, NS, max_batch_jobs=None)
        accepted = c.post(url, files={"file": rows})
        assert accepted.status_code == 202, accepted.text
        c.delete(f"{url}/{accepted.json()['batch_id']}")  # nothing left running


def test_the_cli_sets_and_shows_a_policy_and_the_running_app_follows(
    app: InProcessServer,
) -> None:
    ns = runtime(app).accounts.create_namespace("cli", namespace_id=unique_name("ns"))
    ns_id = ns["namespace_id"]
    done = app.cli(
        "namespaces",
        "policy",
        "set",
        ns_id,
        "--max-memory-mb",
        "4096",
        "--key-rps",
        "10",
        "--egress-allow",
        "api.example.com:443",
        "--egress-allow",
        "*.cdn.example",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["egress_allow"] == ["api.example.com:443", "*.cdn.example"]
    book = runtime(app).policies
    deadline = time.monotonic() + 60
    while book.max_memory_mb(ns_id) != 4096:  # the app's refresh picks it up
        assert time.monotonic() < deadline, "the app never saw the CLI's policy"
        time.sleep(0.1)
    assert book.egress_allow(ns_id) == ("api.example.com:443", "*.cdn.example")
    cleared = app.cli("namespaces", "policy", "set", ns_id, "--clear-egress", "--json")
    assert cleared.returncode == 0 and json.loads(cleared.stdout)["egress_allow"] == []
    shown = app.cli("namespaces", "policy", "show", ns_id)
    assert "max_memory_mb" in shown.stdout and "4096" in shown.stdout, shown.stdout
    assert "no network" in shown.stdout
    unset = app.cli("namespaces", "policy", "set", ns_id, "--clear", "max-memory-mb", "--json")
    assert unset.returncode == 0 and json.loads(unset.stdout)["max_memory_mb"] is None
    bad = app.cli("namespaces", "policy", "set", ns_id, "--egress-allow", "x:0")
    assert bad.returncode == 1 and "egress_allow" in bad.stderr
    missing = app.cli("namespaces", "policy", "show", "ns_nowhere")
    assert missing.returncode == 1 and "no namespace" in missing.stderr
