"""Namespace quotas end to end (issue 28, item 2): a live server, real replicas and batch
workers, quotas set with the admin CLI (which writes the database; the server picks the
change up within PLUGHOST_QUOTA_REFRESH_S) and read back through the admin API.

One namespace gets max_replicas=1, requests_per_second=2 and max_batch_jobs=1: a second
plugin's deploy is refused naming the quota, a burst of calls meets 429 with Retry-After
while the default namespace (no quota) answers every call of the same burst, a second batch
job is refused while the first runs, and /metrics says so per namespace."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from batch_support import batch_plugin_files, submit
from batch_support import upload as upload_batch_plugin
from deploy_support import deploy, plugin_archive, upload, wait_for
from support import LiveServer, unique_name


def policy_of(server: LiveServer, ns: str) -> dict[str, object]:
    with server.client() as c:
        resp = c.get(f"/v1/admin/namespaces/{ns}/policy")
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["policy"])


def burst(server: LiveServer, route: str, calls: int) -> list[httpx.Response]:
    def one(i: int) -> httpx.Response:
        with server.client() as c:
            return c.post(route, json={"inputs": {"text": str(i)}})

    with ThreadPoolExecutor(max_workers=calls) as pool:
        return list(pool.map(one, range(calls)))


def test_quotas_set_by_the_cli_hold_for_one_namespace_only(server: LiveServer) -> None:
    ns = unique_name("ns_q")
    made = server.cli("namespaces", "create", "quotas", "--id", ns, "--json")
    assert made.returncode == 0, made.stderr
    done = server.cli(
        "namespaces",
        "policy",
        "set",
        ns,
        "--max-replicas",
        "1",
        "--rps",
        "2",
        "--max-batch-jobs",
        "1",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["max_replicas"] == 1
    shown = server.cli("namespaces", "policy", "show", ns)
    assert "requests_per_second" in shown.stdout and "2" in shown.stdout, shown.stdout
    deadline = time.monotonic() + 60
    while policy_of(server, ns)["max_replicas"] != 1:  # the server's refresh picks it up
        assert time.monotonic() < deadline, "the server never saw the CLI's policy"
        time.sleep(0.2)

    with server.client() as c:
        names = [unique_name(stem) for stem in ("qa", "qb", "qf", "qbat")]
        first = upload(c, names[0], plugin_archive(names[0]), ns=ns)
        second = upload(c, names[1], plugin_archive(names[1]), ns=ns)
        route = deploy(c, first, ns)["route_prefix"]
        wait_for(c, first, {"deployed"}, timeout=180, ns=ns)
        refused = c.post(f"/v1/namespaces/{ns}/plugins/{second}/deploy")
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["type"] == "QuotaExceededError"
        assert error["message"].startswith("namespace quota max_replicas=1 reached"), error
        free = upload(c, names[2], plugin_archive(names[2]))
        free_route = deploy(c, free)["route_prefix"]
        wait_for(c, free, {"deployed"}, timeout=180)

    answers = burst(server, route, 24)
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429} and codes.count(429) >= 1, codes
    limited = next(r for r in answers if r.status_code == 429)
    assert limited.headers["Retry-After"].isdigit(), limited.headers
    assert limited.json()["error"]["type"] == "QuotaExceededError"
    assert [r.status_code for r in burst(server, free_route, 12)] == [200] * 12

    batch_plugin = upload_batch_plugin(server, batch_plugin_files(names[3]), names[3], ns=ns)
    rows = b"".join(b'{"text": "slow %d"}\n' % i for i in range(400))
    running = submit(server, batch_plugin, rows, "rows.jsonl", ns=ns)
    assert running.status_code == 202, running.text
    second_job = submit(server, batch_plugin, rows, "rows.jsonl", ns=ns)
    assert second_job.status_code == 429, second_job.text
    assert second_job.json()["error"]["message"].startswith(
        "namespace quota max_batch_jobs=1 reached"
    )
    with server.client() as c:
        c.delete(f"/v1/namespaces/{ns}/batches/{running.json()['batch_id']}")
        metrics = c.get("/metrics").text
    assert (
        f'plughost_namespace_quota_rejections_total{{namespace="{ns}",quota="requests_per_second"}}'
        in metrics
    )
    assert (
        f'plughost_namespace_quota_rejections_total{{namespace="{ns}",quota="max_replicas"}} 1.0'
        in metrics
    )
    assert f'plughost_namespace_replicas{{namespace="{ns}"}} 1.0' in metrics
    assert f'plughost_namespace_request_counter_total{{namespace="{ns}"}}' in metrics
