"""The server's container service: scoping to the caller's organization, the targets, the
per-namespace cap and the per-call limit, and its error replies (fakes for the secrets and
the LLM endpoint)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from plughost.config import Settings
from plughost.domain.container import ContainerScope
from plughost.services.container import ContainerService
from plughost.services.llm import LlmClient

VALUES = {"org_a": {"token": "a-secret", "llm_api_key": "sk-org-a"}, "org_b": {"token": "b-secret"}}
NAMESPACES = {"ns_a": "org_a", "ns_b": "org_b"}


class FakeSecrets:
    def get(self, org_id: str, name: str) -> str | None:
        return VALUES.get(org_id, {}).get(name)

    def names(self, org_id: str) -> list[str]:
        return list(VALUES.get(org_id, {}))


def _service(
    llm: LlmClient | None = None, secrets: Any = "fake", **settings: Any
) -> ContainerService:
    source = FakeSecrets() if secrets == "fake" else secrets
    return ContainerService(Settings(**settings), source, NAMESPACES.get, llm)


def _call(service: ContainerService, scope: ContainerScope, request: Any) -> dict[str, Any]:
    return asyncio.run(service.call(scope, request))


def test_secrets_are_read_from_the_namespaces_own_organization() -> None:
    service = _service()
    get = {"target": "secrets.get", "args": {"name": "token"}}
    assert _call(service, ContainerScope("ns_a"), get) == {"ok": True, "result": "a-secret"}
    assert _call(service, ContainerScope("ns_b"), get) == {"ok": True, "result": "b-secret"}
    listed = _call(service, ContainerScope("ns_b"), {"target": "secrets.list"})
    assert listed == {"ok": True, "result": ["token"]}
    # a request cannot name another organization: only the scope decides
    sneaky = {"target": "secrets.get", "args": {"name": "llm_api_key", "org": "org_a"}}
    assert _call(service, ContainerScope("ns_b"), sneaky) == {"ok": True, "result": None}


def test_a_batch_scope_names_its_organization_directly() -> None:
    reply = _call(
        _service(),
        ContainerScope("ns_x", "org_a"),
        {"target": "secrets.get", "args": {"name": "token"}},
    )
    assert reply["result"] == "a-secret"


def test_bad_requests_and_unknown_namespaces_are_error_replies() -> None:
    service = _service()
    assert _call(service, ContainerScope("ns_a"), [1])["error"]["type"] == "ContainerRequestError"
    unknown = _call(service, ContainerScope("ns_a"), {"target": "models.get"})
    assert "unknown container target" in unknown["error"]["message"]
    empty = _call(service, ContainerScope("ns_a"), {"target": "secrets.get", "args": {"name": ""}})
    assert empty["error"]["type"] == "ContainerRequestError"
    orphan = _call(service, ContainerScope("ns_gone"), {"target": "secrets.list"})
    assert orphan["error"]["type"] == "ContainerUnavailable"


def test_a_server_without_secrets_says_so() -> None:
    reply = _call(_service(secrets=None), ContainerScope("ns_a"), {"target": "secrets.list"})
    assert reply == {
        "ok": False,
        "error": {
            "type": "ContainerUnavailable",
            "message": "this server keeps no organization secrets",
        },
    }


def _answer(request: httpx.Request) -> httpx.Response:
    auth = request.headers.get("Authorization", "")
    return httpx.Response(200, json={"choices": [{"message": {"content": auth}}]})


def test_the_llm_uses_the_organizations_key_when_the_server_has_none() -> None:
    settings = Settings(llm_base_url="http://llm.test/v1")
    llm = LlmClient(settings, transport=httpx.MockTransport(_answer))
    service = _service(llm)
    request = {"target": "llm.generate", "args": {"text": "x", "model": "m"}}
    assert _call(service, ContainerScope("ns_a"), request)["result"]["data"] == "Bearer sk-org-a"
    assert _call(service, ContainerScope("ns_b"), request)["result"]["data"] == ""


def test_an_unconfigured_llm_is_an_error_reply_naming_the_setting() -> None:
    reply = _call(
        _service(), ContainerScope("ns_a"), {"target": "llm.generate", "args": {"text": "x"}}
    )
    assert reply["error"]["type"] == "LLMNotConfigured"
    assert "PLUGHOST_LLM_BASE_URL" in reply["error"]["message"]


class GatedSecrets(FakeSecrets):
    """``names`` of org_a waits until the test opens the gate (reads run in threads), and the
    most reads in flight at once is kept."""

    def __init__(self) -> None:
        import threading

        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most = 0

    def names(self, org_id: str) -> list[str]:
        if org_id != "org_a":
            return ["b"]
        with self._lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        self.entered.release()
        self.gate.wait(10)
        with self._lock:
            self.in_flight -= 1
        return ["a"]


LIST = {"target": "secrets.list"}


def test_a_namespace_has_at_most_its_cap_of_calls_in_flight_and_others_go_on() -> None:
    secrets = GatedSecrets()
    service = _service(secrets=secrets, container_max_concurrency=1)

    async def scenario() -> list[dict[str, Any]]:
        first = asyncio.create_task(service.call(ContainerScope("ns_a"), LIST))
        await asyncio.to_thread(secrets.entered.acquire)  # the first holds the only slot
        second = asyncio.create_task(service.call(ContainerScope("ns_a"), LIST))
        other = await service.call(ContainerScope("ns_b"), LIST)  # not held up by ns_a
        secrets.gate.set()
        return [await first, await second, other]

    first, second, other = asyncio.run(scenario())
    assert first == second == {"ok": True, "result": ["a"]}
    assert other == {"ok": True, "result": ["b"]}
    assert secrets.most == 1


def test_a_call_past_its_limit_is_a_timeout_reply_naming_the_setting() -> None:
    secrets = GatedSecrets()
    service = _service(secrets=secrets, container_call_timeout_s=0.2)

    async def scenario() -> dict[str, Any]:
        try:
            return await service.call(ContainerScope("ns_a"), LIST)
        finally:
            secrets.gate.set()  # the read's thread ends before the loop closes

    reply = asyncio.run(scenario())
    assert reply["error"]["type"] == "ContainerTimeout"
    assert "PLUGHOST_CONTAINER_CALL_TIMEOUT_S" in reply["error"]["message"]


def test_model_load_reports_are_counted_for_the_callers_namespace() -> None:
    from plughost.metrics.model_loads import ModelLoadMetrics

    loads = ModelLoadMetrics()
    service = ContainerService(Settings(), FakeSecrets(), NAMESPACES.get, model_loads=loads)
    report = {"target": "models.load_report",
              "args": {"model": "tiny_1_0_0", "outcome": "ok", "seconds": 0.5}}
    # no organization lookup: a namespace the server does not know still counts
    assert _call(service, ContainerScope("ns_unknown"), report) == {"ok": True, "result": None}
    assert loads.series[("ns_unknown", "tiny_1_0_0")].outcomes["ok"] == 1
    bad = {"target": "models.load_report", "args": {"model": "", "seconds": "x"}}
    assert _call(service, ContainerScope("ns_a"), bad)["error"]["type"] == "ContainerRequestError"


class FakeGroup:
    def __init__(self, fail: Exception | None = None) -> None:
        self.bodies: list[bytes] = []
        self.fail = fail

    async def call_body(self, body: bytes, deadline_s: float | None = None) -> bytes:
        self.bodies.append(body)
        if self.fail is not None:
            raise self.fail
        return b'{"echo": ' + body + b"}"


class FakeRoute:
    def __init__(self, group: FakeGroup) -> None:
        self.group = group

    def pick(self) -> FakeRoute:
        return self


class FakeRoutes:
    def __init__(self, table: dict[tuple[str, str], FakeRoute]) -> None:
        self.table = table

    def lookup(self, namespace_id: str, route_name: str) -> FakeRoute | None:
        return self.table.get((namespace_id, route_name))


def test_a_plugin_calls_another_deployed_in_its_own_namespace_only() -> None:
    from plughost.errors import CallFailed

    good, bad = FakeGroup(), FakeGroup(CallFailed("ValueError", "boom"))
    routes = FakeRoutes({("ns_a", "embedder"): FakeRoute(good), ("ns_a", "broken"): FakeRoute(bad),
                         ("ns_b", "secret_plugin"): FakeRoute(FakeGroup())})
    service = ContainerService(Settings(), FakeSecrets(), NAMESPACES.get, plugins=routes)
    scope = ContainerScope("ns_a")

    def has(name: str) -> Any:
        return _call(service, scope, {"target": "plugins.has", "args": {"name": name}})["result"]

    assert has("embedder") is True
    assert has("secret_plugin") is False  # another namespace's plugin is not there
    call = {"target": "plugins.call",
            "args": {"name": "embedder", "inputs": {"text": "hi"}, "parameters": {"k": 1}}}
    assert _call(service, scope, call)["result"] == {
        "echo": {"inputs": {"text": "hi"}, "parameters": {"k": 1}}
    }
    other = _call(service, scope, {"target": "plugins.call",
                                   "args": {"name": "secret_plugin", "inputs": {}}})
    assert other["error"]["type"] == "PluginNotDeployed"
    failed = _call(service, scope, {"target": "plugins.call", "args": {"name": "broken"}})
    assert failed["error"] == {"type": "PluginError", "message": "broken: ValueError: boom"}
    without = ContainerService(Settings(), FakeSecrets(), NAMESPACES.get)
    refused = _call(without, scope, {"target": "plugins.has", "args": {"name": "embedder"}})
    assert refused["error"]["type"] == "ContainerUnavailable"
