"""One app in process for the API-surface tests of this folder (SQLite: these tests are about
the HTTP layer; the database kinds are compared by tests/integration/test_registry_http.py),
with small body limits so that oversize bodies cost little, another organization, a key
limited to one namespace, and one deployed echo plugin that tests read but never change.

Fixture names differ from the tier's ``server`` (parametrised over databases), which other
test files of this folder use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from inproc import InProcessServer
from support import unique_name

from .helpers import NS, runtime, upload, wait_status

LIMITS = {
    "max_archive_bytes": 200_000,
    "multipart_overhead_bytes": 16_384,
    "batch_max_input_bytes": 100_000,
}


@pytest.fixture(scope="package")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    srv = InProcessServer(home=tmp_path_factory.mktemp("api"), overrides=dict(LIMITS)).start()
    try:
        yield srv
    finally:
        srv.stop()


@dataclass(frozen=True)
class Tenant:
    """An API key and the one namespace it is meant for."""

    key: str
    namespace_id: str
    organization_id: str


@pytest.fixture(scope="package")
def outsider(app: InProcessServer) -> Tenant:
    """Another organization with a namespace of its own and a key of that organization."""
    accounts = runtime(app).accounts
    org = unique_name("org")
    accounts.create_organization(org)
    ns = accounts.create_namespace("theirs", org)["namespace_id"]
    key, _ = accounts.create_key(org)
    return Tenant(key, ns, org)


@pytest.fixture(scope="package")
def limited(app: InProcessServer) -> Tenant:
    """A key of the default organization that reaches one new namespace only."""
    accounts = runtime(app).accounts
    ns = accounts.create_namespace("limited", namespace_id=unique_name("ns"))["namespace_id"]
    key, _ = accounts.create_key(namespaces=[ns])
    return Tenant(key, ns, "org_default")


@dataclass(frozen=True)
class Deployed:
    name: str
    plugin_id: str
    route_prefix: str
    alias: str


@pytest.fixture(scope="package")
def deployed(app: InProcessServer) -> Deployed:
    """The echo plugin, deployed in the default namespace (read-only for the tests)."""
    name = unique_name("echo")
    with app.client() as c:
        pid = upload(c, name)
        resp = c.post(f"/v1/namespaces/{NS}/plugins/{pid}/deploy")
        assert resp.status_code == 200, resp.text
        body = wait_status(c, pid, {"deployed", "failed"})
    assert body["status"] == "deployed", body
    return Deployed(name, pid, body["route_prefix"], f"/inference/{NS}/{name}")
