"""The egress allowlist end to end: a strict-mode server whose namespace ``ns_allow`` may reach
one port of 127.0.0.1 (listed exactly, which the private-range rule requires), through the
server's egress proxy. A plugin there fetches that port with ``urllib.request`` and with
``download_asset``; another port, and 127.0.0.1 without the exact entry, are refused with a
clear error; a plugin of a namespace without an allowlist still has no network at all; the
connections are in the server's log and the plugin's log stream. An allowlist set and cleared
through the admin API applies to the next release; an undeployed release's socket goes, and
the stopped server leaves nothing in /tmp."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from egress_e2e_support import FETCHER, listening, proxy_root
from sec_servers import server_env, wait_until
from sec_support import NS, deploy_files
from support import PIPELINE, LiveServer, zip_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "egress"))

from egress_support import outside_server

ALLOWED_NS = "ns_allow"
OTHER_ALLOWED_NS = "ns_allow_other"  # an allowlist, but not for 127.0.0.1
API_NS = "ns_allow_api"  # an allowlist only through the admin API

# a direct connection (http.client ignores the proxy variables; socket is refused by the scan)
RAW_SOCKET = """
import http.client


class Service:
    def __call__(self, inputs, parameters):
        conn = http.client.HTTPConnection("127.0.0.1", inputs["port"], timeout=5)
        try:
            conn.request("GET", "/direct")
            return {"connected": True, "status": conn.getresponse().status}
        except OSError as exc:
            return {"connected": False, "error": repr(exc)}
        finally:
            conn.close()


def get_inference_service(**kwargs):
    return Service()
"""


@dataclass
class EgressSetup:
    server: LiveServer
    allowed: int
    other: int
    hits: dict[int, list[str]]


@pytest.fixture(scope="module")
def egress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EgressSetup]:
    with ExitStack() as stack:
        allowed, allowed_hits = stack.enter_context(outside_server())
        other, other_hits = stack.enter_context(outside_server())
        env = server_env(skip_scan=False)
        env["PLUGHOST_EGRESS_ALLOW"] = (
            f"{ALLOWED_NS}=127.0.0.1:{allowed};{OTHER_ALLOWED_NS}=*.example.com,localhost.example:1"
        )
        home = tmp_path_factory.mktemp("sec-egress")
        root = proxy_root(home)
        left: list[str] = []
        stack.callback(_no_leftovers, root, left)  # after the server stopped
        server = LiveServer(home=home, extra_env=env).start()
        server.key = (home / "admin-key").read_text().strip()
        stack.callback(_stopped, server, root, left)
        for ns in (ALLOWED_NS, OTHER_ALLOWED_NS, API_NS):
            created = server.cli("namespaces", "create", ns, "--id", ns)
            assert created.returncode == 0, created.stderr
        yield EgressSetup(server, allowed, other, {allowed: allowed_hits, other: other_hits})


def _stopped(server: LiveServer, root: Path, left: list[str]) -> None:
    server.stop()
    if root.exists():
        left.extend(str(p) for p in [root, *root.rglob("*")])


def _no_leftovers(root: Path, left: list[str]) -> None:
    """A stopped server (no replica left running for a successor) removed its proxy's
    folders; removed here anyway, so a failing run leaves nothing in /tmp either."""
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"the stopped server left {left}"


def _sockets(setup: EgressSetup) -> set[Path]:
    return listening(setup.server.home)


def _call(setup: EgressSetup, ns: str, realtime: str, inputs: dict[str, Any]) -> dict[str, Any]:
    name = f"egress_{uuid.uuid4().hex[:8]}"
    files = {
        "manifest.py": f'feature_extractor_name = "{name}"\nversion = "1.0.0"\n',
        "pipeline.py": PIPELINE,
        "realtime.py": realtime,
    }
    with setup.server.client() as c:
        plugin_id, body = deploy_files(c, name, files, ns=ns)
        assert body["status"] == "deployed", body
        resp = c.post(body["route_prefix"], json={"inputs": inputs}, timeout=120)
        assert resp.status_code == 200, resp.text
        logs_url = f"/v1/namespaces/{ns}/plugins/{plugin_id}/logs"
        # the relay logs a connection once it is closed: its line may come after the answer
        wait_until(lambda: "egress: " in c.get(logs_url).text, 30 if "url" in inputs else 0)
        logs = c.get(logs_url).text
        c.delete(f"/v1/namespaces/{ns}/plugins/{plugin_id}")
    return {**resp.json(), "_logs": logs}


def test_an_allowed_port_is_reached_through_the_proxy(egress: EgressSetup) -> None:
    url = f"http://127.0.0.1:{egress.allowed}/image.png"
    out = _call(egress, ALLOWED_NS, FETCHER, {"url": url})
    expected = f"outside {egress.allowed} /image.png"
    assert out.get("body") == expected, out
    assert out.get("asset") == expected, out
    assert egress.hits[egress.allowed].count("/image.png") == 2
    log = egress.server.logs()
    assert f"egress namespace={ALLOWED_NS} caller=r" in log
    assert f"GET 127.0.0.1:{egress.allowed} [127.0.0.1] allowed" in log
    assert f"egress: GET {url}" in out["_logs"], (out["_logs"][-2000:], log[-3000:])


def test_another_port_is_refused_with_a_clear_error(egress: EgressSetup) -> None:
    for scheme in ("http", "https"):
        url = f"{scheme}://127.0.0.1:{egress.other}/secret"
        out = _call(egress, ALLOWED_NS, FETCHER, {"url": url})
        assert "body" not in out and "asset" not in out, out
        assert "refused by the egress policy" in out["error"], out
        assert "not on the namespace's egress allowlist" in out["asset_error"], out
    assert egress.hits[egress.other] == []
    assert f"127.0.0.1:{egress.other} refused" in egress.server.logs()


def test_loopback_without_an_exact_entry_is_refused(egress: EgressSetup) -> None:
    url = f"http://127.0.0.1:{egress.allowed}/other-namespace"
    out = _call(egress, OTHER_ALLOWED_NS, FETCHER, {"url": url})
    assert "refused by the egress policy" in out["error"], out
    assert "refused by the egress policy" in out["asset_error"], out
    assert "/other-namespace" not in egress.hits[egress.allowed]


def test_a_namespace_without_an_allowlist_has_no_network(egress: EgressSetup) -> None:
    url = f"http://127.0.0.1:{egress.allowed}/no-allowlist"
    out = _call(egress, NS, FETCHER, {"url": url})
    assert "body" not in out and "asset" not in out, out
    assert "refused by the egress policy" not in out["error"], out  # no proxy at all
    raw = _call(egress, NS, RAW_SOCKET, {"port": egress.allowed})
    assert raw["connected"] is False, raw
    assert "/no-allowlist" not in egress.hits[egress.allowed]
    assert "/direct" not in egress.hits[egress.allowed]


def test_the_allowlisted_sandbox_reaches_nothing_directly(egress: EgressSetup) -> None:
    """Inet sockets are allowed there, but its network namespace has only loopback: the
    host's listener is out of reach except through the proxy."""
    raw = _call(egress, ALLOWED_NS, RAW_SOCKET, {"port": egress.allowed})
    assert raw["connected"] is False, raw
    assert "ConnectionRefused" in raw["error"], raw  # a loopback of its own, nothing there
    assert "/direct" not in egress.hits[egress.allowed]


BATCH_MANIFEST = """
feature_extractor_name = "{name}"
version = "v1"
description = "egress batch test plugin"
dependencies = []
features = [{{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 2,
             "distance_metric": "cosine"}}]
output_schema = {{"type": "object"}}
input_mappings = {{"url": "url"}}
compute_profile = {{"batch_size": 2, "max_concurrency": 1}}
"""

BATCH_PIPELINE = """
from pathlib import Path

from shared.plugins import AssetError, download_asset


def fetch_step(batch):
    batch = batch.copy()
    fetched = []
    for url in batch["url"]:
        try:
            path, _ = download_asset(str(url))
            fetched.append(Path(path).read_text())
        except AssetError as exc:
            fetched.append("error: " + str(exc))
    batch["fetched"] = fetched
    return batch


def build_steps(extractor_request, container=None, base_steps=None, dataset_size=None,
                content_flags=None):
    return {"steps": [fetch_step]}
"""


def test_a_batch_worker_of_the_namespace_uses_the_proxy(
    egress: EgressSetup, tmp_path: Path
) -> None:
    import json
    import time

    import httpx
    import pandas as pd

    name = f"egress_batch_{uuid.uuid4().hex[:8]}"
    files = {"manifest.py": BATCH_MANIFEST.format(name=name), "pipeline.py": BATCH_PIPELINE}
    allowed = f"http://127.0.0.1:{egress.allowed}/batch-row"
    other = f"http://127.0.0.1:{egress.other}/batch-row"
    rows = "".join(json.dumps({"url": u}) + "\n" for u in (allowed, other))
    with egress.server.client() as c:
        up = c.post(
            f"/v1/namespaces/{ALLOWED_NS}/plugins",
            files={"file": ("p.zip", zip_bytes(files), "application/zip")},
            data={"name": name, "version": "1.0.0"},
        ).json()
        assert up.get("validation_status") == "passed", up
        plugin_id = up["plugin_id"]
        submitted = c.post(
            f"/v1/namespaces/{ALLOWED_NS}/plugins/{plugin_id}/batches",
            files={"file": ("in.jsonl", rows.encode(), "application/octet-stream")},
        )
        assert submitted.status_code < 300, submitted.text
        endpoint = submitted.json()["status_endpoint"]
        deadline = time.monotonic() + 180
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = c.get(endpoint).json()
            if body.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.5)
    assert body.get("status") == "completed", (body, egress.server.logs()[-3000:])
    target = tmp_path / "out.parquet"
    target.write_bytes(httpx.get(body["output_url"], timeout=60).content)
    frame = pd.read_parquet(target)
    fetched = dict(zip(frame["url"], frame["fetched"], strict=True))
    assert fetched[allowed] == f"outside {egress.allowed} /batch-row"
    assert "not on the namespace's egress allowlist" in fetched[other]
    assert egress.hits[egress.other] == []
    assert f"egress namespace={ALLOWED_NS} caller=" in egress.server.logs()


def _put_policy(setup: EgressSetup, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    with setup.server.client() as c:  # the bootstrap admin key
        resp = c.put(f"/v1/admin/namespaces/{ns}/policy", json=body)
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["policy"])


def _allowlisted(setup: EgressSetup) -> list[str]:
    with setup.server.client() as c:
        return list(c.get("/healthz").json()["sandbox"]["egress_allowlists"])


def test_healthz_lists_the_allowlisted_namespaces(egress: EgressSetup) -> None:
    listed = _allowlisted(egress)
    assert ALLOWED_NS in listed and OTHER_ALLOWED_NS in listed, listed
    assert NS not in listed


def test_an_allowlist_set_through_the_admin_api_applies_to_the_next_release(
    egress: EgressSetup,
) -> None:
    url = f"http://127.0.0.1:{egress.allowed}/api-allowlist"
    policy = _put_policy(egress, API_NS, {"egress_allow": [f"127.0.0.1:{egress.allowed}"]})
    assert policy["egress_allow"] == [f"127.0.0.1:{egress.allowed}"], policy
    assert API_NS in _allowlisted(egress)
    name = f"egress_api_{uuid.uuid4().hex[:8]}"
    files = {
        "manifest.py": f'feature_extractor_name = "{name}"\nversion = "1.0.0"\n',
        "pipeline.py": PIPELINE,
        "realtime.py": FETCHER,
    }
    with egress.server.client() as c:
        before = _sockets(egress)
        plugin_id, body = deploy_files(c, name, files, ns=API_NS)
        assert body["status"] == "deployed", body
        opened = _sockets(egress) - before
        assert len(opened) == 1, (opened, before)  # the release's own socket
        out = c.post(body["route_prefix"], json={"inputs": {"url": url}}, timeout=120).json()
        assert out.get("body") == f"outside {egress.allowed} /api-allowlist", out
        # undeployed: no replica of the release is left, its socket and folder go
        c.delete(f"/v1/namespaces/{API_NS}/plugins/{plugin_id}").raise_for_status()
        (folder,) = opened
        assert wait_until(lambda: not folder.exists(), 60), sorted(folder.iterdir())
    # the next release of the namespace gets a socket of its own, which works
    out = _call(egress, API_NS, FETCHER, {"url": url + "/next"})
    assert out.get("body") == f"outside {egress.allowed} /api-allowlist/next", out
    # cleared through the admin API: the next release has no network at all (no proxy)
    assert _put_policy(egress, API_NS, {"egress_allow": None})["egress_allow"] in (None, [])
    assert API_NS not in _allowlisted(egress)
    out = _call(egress, API_NS, FETCHER, {"url": url + "/cleared"})
    assert "body" not in out and "asset" not in out, out
    assert "refused by the egress policy" not in out["error"], out  # no proxy to ask
    assert "/api-allowlist/cleared" not in egress.hits[egress.allowed]
