"""What a plugin reaches through its ``container``, on a live strict-mode server with the
tests' own OpenAI-compatible server behind ``container.llm``:

* organization secrets: a plugin of another organization reads none of them, neither through
  the container nor from the server's files (the encryption key, the database); a key limited
  to some namespaces can neither list nor change them (403);
* the LLM gateway: a prompt past PLUGHOST_LLM_MAX_PROMPT_BYTES is refused before it reaches
  the endpoint, and a namespace past PLUGHOST_LLM_REQUESTS_PER_MINUTE gets a clear error
  while another namespace's calls go on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from llm_server import LlmServer
from support import PIPELINE, LiveServer, unique_name, zip_bytes

from plughost.persistence.db import Database
from plughost.services.accounts import Accounts

NS = "ns_default"
NS_RATE = "ns_llm_rate"  # of the default organization; exhausts its LLM bound alone
NS_OTHER = "ns_other_org"
OTHER_ORG = "org_other"
SECRET = "payments_token"
VALUE = "pt-5d1e0c-of-the-default-organization"
MAX_PROMPT = 4096
PER_MINUTE = 3
PATH = "/v1/organizations/secrets"

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
description = "container probe"
dependencies = []
features = []
"""

# tries what it is asked: LLM calls of a prompt size, a secret read, files of the server
PROBE = """
import pathlib

from shared.plugins.inference.serve import BaseInferenceService


class Probe(BaseInferenceService):
    async def run_inference(self, inputs, parameters):
        container = self.container
        out = {"llm": [], "files": {}}
        for _ in range(int(inputs.get("calls", 0))):
            try:
                answer = await container.llm.generate(
                    instruction="Say", text="x" * int(inputs.get("size", 1)), model="probe"
                )
                out["llm"].append({"ok": answer.data})
            except Exception as exc:
                kind = getattr(exc, "type", type(exc).__name__)
                out["llm"].append({"error": kind, "message": str(exc)})
        if inputs.get("secret"):
            out["secret"] = await container.secrets.get(inputs["secret"])
            out["names"] = await container.secrets.list()
        for path in inputs.get("paths", []):
            try:
                out["files"][path] = pathlib.Path(path).read_bytes()[:32].hex()
            except Exception as exc:
                out["files"][path] = type(exc).__name__
        return out
"""


@dataclass
class Deployed:
    server: LiveServer
    llm: LlmServer
    other_key: str
    limited_key: str
    routes: dict[str, str]  # namespace -> inference route of the probe


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    llm = LlmServer().start()
    server = LiveServer(
        home=tmp_path_factory.mktemp("supply-container"),
        extra_env={
            "PLUGHOST_SANDBOX": "strict",
            "PLUGHOST_LLM_BASE_URL": llm.url,
            "PLUGHOST_LLM_MAX_PROMPT_BYTES": str(MAX_PROMPT),
            "PLUGHOST_LLM_REQUESTS_PER_MINUTE": str(PER_MINUTE),
        },
    )
    try:
        server.start(timeout=120)
        sandbox = httpx.get(f"{server.url}/healthz", timeout=10).json()["sandbox"]
        assert all(sandbox["layers"].values()), sandbox  # never probe uncontained
        db = Database(f"sqlite:///{server.home / 'plughost.db'}")
        try:
            accounts = Accounts(db)
            accounts.create_organization(OTHER_ORG, OTHER_ORG)
            accounts.create_namespace(NS_OTHER, OTHER_ORG, NS_OTHER)
            accounts.create_namespace(NS_RATE, "org_default", NS_RATE)
            other_key = accounts.create_key(OTHER_ORG)[0]
            limited_key = accounts.create_key("org_default", [NS])[0]
        finally:
            db.dispose()
        with server.client() as c:
            made = c.post(PATH, json={"secret_name": SECRET, "secret_value": VALUE})
            assert made.status_code == 201, made.text
        routes = {
            NS: _deploy(server, server.key, NS),
            NS_RATE: _deploy(server, server.key, NS_RATE),
        }
        routes[NS_OTHER] = _deploy(server, other_key, NS_OTHER)
        yield Deployed(server, llm, other_key, limited_key, routes)
    finally:
        server.stop()
        llm.stop()


def _deploy(server: LiveServer, key: str, ns: str, timeout: float = 180.0) -> str:
    name = unique_name("probe")
    archive = zip_bytes(
        {"manifest.py": MANIFEST.format(name=name), "pipeline.py": PIPELINE, "realtime.py": PROBE}
    )
    with server.client(key=key) as c:
        resp = c.post(
            f"/v1/namespaces/{ns}/plugins",
            data={"name": name, "version": "1.0.0"},
            files={"file": ("plugin.zip", archive, "application/zip")},
        )
        assert resp.status_code == 200 and resp.json()["success"], resp.text
        plugin_id = resp.json()["plugin_id"]
        route = c.post(f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy").json()["route_prefix"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = c.get(f"/v1/namespaces/{ns}/plugins/{plugin_id}/status").json()
            assert body["status"] != "failed", body
            if body["status"] == "deployed":
                return str(route)
            time.sleep(0.1)
    raise AssertionError(f"{plugin_id} not deployed: {body}")


def _probe(env: Deployed, ns: str, key: str, **inputs: Any) -> dict[str, Any]:
    with env.server.client(key=key) as c:
        reply = c.post(env.routes[ns], json={"inputs": inputs, "parameters": {}}, timeout=120)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_a_plugin_of_another_organization_reads_no_secret(env: Deployed) -> None:
    home = env.server.home.resolve()
    files = [str(home / "secrets-key"), str(home / "plughost.db")]
    own = _probe(env, NS, env.server.key, secret=SECRET, paths=files)
    assert own["secret"] == VALUE and SECRET in own["names"]  # the probe does reach its own
    other = _probe(env, NS_OTHER, env.other_key, secret=SECRET, paths=files)
    assert other["secret"] is None and other["names"] == []
    assert set(other["files"].values()) <= {"FileNotFoundError", "PermissionError"}, other
    assert set(own["files"].values()) <= {"FileNotFoundError", "PermissionError"}, own
    assert (home / "secrets-key").is_file()  # it exists; the sandbox hides it
    with env.server.client(key=env.other_key) as c:
        assert c.get(PATH).json() == {"secrets": [], "count": 0}


def test_a_namespace_limited_key_neither_lists_nor_changes_them(env: Deployed) -> None:
    with env.server.client(key=env.limited_key) as c:
        for resp in (
            c.get(PATH),
            c.post(PATH, json={"secret_name": "new_one", "secret_value": "value-1"}),
            c.put(f"{PATH}/{SECRET}", json={"secret_value": "changed"}),
            c.delete(f"{PATH}/{SECRET}"),
        ):
            assert resp.status_code == 403, resp.text
            assert "only a key of the whole organization" in resp.text
            assert SECRET not in resp.text
    with env.server.client() as c:
        assert SECRET in c.get(PATH).json()["secrets"]


def test_an_oversize_prompt_is_refused_before_it_reaches_the_endpoint(env: Deployed) -> None:
    before = len(env.llm.requests)
    big = _probe(env, NS, env.server.key, calls=1, size=MAX_PROMPT * 4)
    assert big["llm"][0]["error"] == "LLMRequestTooLarge", big
    assert "PLUGHOST_LLM_MAX_PROMPT_BYTES" in big["llm"][0]["message"]
    assert len(env.llm.requests) == before  # the upstream never saw it
    small = _probe(env, NS, env.server.key, calls=1, size=100)
    assert small["llm"][0]["ok"].startswith("echo: Say"), small
    assert len(env.llm.requests) == before + 1
    assert all(len(str(r["body"])) < MAX_PROMPT * 2 for r in env.llm.requests)


def test_a_namespace_past_its_llm_rate_gets_a_clear_error_and_others_go_on(
    env: Deployed,
) -> None:
    before = len(env.llm.requests)
    burst = _probe(env, NS_RATE, env.server.key, calls=PER_MINUTE + 2, size=10)
    outcomes = [r.get("error", "ok") for r in burst["llm"]]
    assert outcomes == ["ok"] * PER_MINUTE + ["LLMRateLimited"] * 2, burst
    assert "PLUGHOST_LLM_REQUESTS_PER_MINUTE" in burst["llm"][-1]["message"]
    assert "retry in" in burst["llm"][-1]["message"]
    assert len(env.llm.requests) == before + PER_MINUTE
    neighbour = _probe(env, NS_OTHER, env.other_key, calls=1, size=10)
    assert "ok" in neighbour["llm"][0], neighbour
