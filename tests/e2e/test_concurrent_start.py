"""Servers that start together: several `plughost serve` launched at once on one empty
PostgreSQL database (a Deployment's replicas, a systemd template) all come up, share the
same accounts and secrets, and serve the same data."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from deploy_support import NS, plugin_archive, upload
from support import LiveServer, create_pg_database, drop_pg_database, unique_name

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

SERVERS = 4
STAGGER_SEED = 1729  # the 0-300 ms gaps between starts are random, but the same on every run


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def _launch_together(servers: list[LiveServer], gaps_s: list[float]) -> None:
    """Launch every server (sleeping ``gaps_s[i]`` before the i-th), then wait for all; on
    any failure every server is stopped and the error names each one's log."""
    try:
        for server, gap in zip(servers, gaps_s, strict=True):
            time.sleep(gap)
            server.launch()
        failures = []
        for server in servers:
            try:
                server.wait_healthy(timeout=120)
            except RuntimeError as exc:
                failures.append(f"server on port {server.port}: {exc}")
        assert not failures, "\n\n".join(failures)
    except BaseException:
        for server in servers:
            server.stop()
        raise


def _pg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _check_one_cluster(servers: list[LiveServer], key: str, url: str) -> None:
    """What servers started together must agree on: one set of bootstrap rows and secrets,
    one key for all, one leader, the same plugins and the same URL-signing secret."""
    with psycopg.connect(_pg(url)) as conn:
        orgs = conn.execute("SELECT id FROM organizations").fetchall()
        namespaces = conn.execute("SELECT id FROM namespaces").fetchall()
        keys = conn.execute("SELECT label FROM api_keys").fetchall()
        secrets = conn.execute("SELECT name FROM server_secrets ORDER BY name").fetchall()
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert [r[0] for r in orgs] == ["org_default"]
    assert [r[0] for r in namespaces] == [NS]
    assert [r[0] for r in keys] == ["bootstrap"]
    # one URL-signing secret and one key of the organization secrets, made by one of them
    assert [r[0] for r in secrets] == ["organization_secrets", "url_signing"]
    assert len(versions) == 1
    clients = [server.client(key=key) for server in servers]
    try:
        roles = [c.get("/healthz").json()["role"] for c in clients]
        assert sorted(roles) == ["follower"] * (SERVERS - 1) + ["leader"], roles
        name = unique_name("together")
        plugin_id = upload(clients[1], name, plugin_archive(name))
        for c in clients:
            listed = c.get(f"/v1/namespaces/{NS}/plugins")
            assert listed.status_code == 200, listed.text
            assert plugin_id in [p["plugin_id"] for p in listed.json()["plugins"]]
        # a URL signed by one server is accepted by every other (one shared secret)
        got = clients[2].get(
            f"/v1/namespaces/{NS}/plugins/{plugin_id}", params={"return_presigned_urls": True}
        )
        assert got.status_code == 200, got.text
        signed = httpx.URL(got.json()["presigned_download_url"])
        for server in servers:
            fetched = httpx.get(f"{server.url}{signed.raw_path.decode()}", timeout=30)
            assert fetched.status_code == 200, (server.port, fetched.text)
            assert fetched.content[:2] == b"PK"  # the uploaded zip
    finally:
        for c in clients:
            c.close()


def _servers(home: Path, url: str, generated_key: bool) -> list[LiveServer]:
    """Servers on one home (the local archive store is shared) and one database; with
    ``generated_key`` none is given PLUGHOST_BOOTSTRAP_KEY, so the first one to bootstrap
    generates the key."""
    extra: dict[str, str] = {}
    if generated_key:
        extra["PLUGHOST_BOOTSTRAP_KEY"] = ""
    shared = LiveServer(home=home, database_url=url, extra_env=dict(extra))
    return [shared] + [
        LiveServer(home=home, database_url=url, key=shared.key, extra_env=dict(extra))
        for _ in range(SERVERS - 1)
    ]


def _stop_all(servers: list[LiveServer]) -> None:
    for server in servers:
        server.stop()


@pytest.mark.parametrize("generated_key", [False, True], ids=["given-key", "generated-key"])
def test_four_servers_started_at_once_on_an_empty_database_share_one_setup(
    tmp_path: Path, pg_url: str, generated_key: bool
) -> None:
    servers = _servers(tmp_path, pg_url, generated_key)
    _launch_together(servers, [0.0] * SERVERS)
    try:
        key = _admin_key(servers) if generated_key else servers[0].key
        _check_one_cluster(servers, key, pg_url)
    finally:
        _stop_all(servers)


@pytest.mark.parametrize("generated_key", [False, True], ids=["given-key", "generated-key"])
def test_four_servers_started_up_to_300ms_apart_share_one_setup(
    tmp_path: Path, pg_url: str, generated_key: bool
) -> None:
    rng = random.Random(STAGGER_SEED + int(generated_key))
    gaps = [0.0] + [rng.uniform(0.0, 0.3) for _ in range(SERVERS - 1)]
    servers = _servers(tmp_path, pg_url, generated_key)
    _launch_together(servers, gaps)
    try:
        key = _admin_key(servers) if generated_key else servers[0].key
        _check_one_cluster(servers, key, pg_url)
    finally:
        _stop_all(servers)


def _admin_key(servers: list[LiveServer]) -> str:
    """The key the one server that generated it wrote (and logged) on the shared home."""
    creators = [s.port for s in servers if "created the first API key" in s.logs()]
    assert len(creators) == 1, f"servers that generated a first key: {creators}"
    path = servers[0].home / "admin-key"
    assert path.exists(), "no server wrote the generated key"
    return path.read_text().strip()
