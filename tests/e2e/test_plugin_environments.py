"""Plugin environments end to end: manifest dependencies the base set lacks are installed
from PyPI with uv in the pending phase, reused by a second release with the same set, and a
package that cannot be resolved (or, with installation off, is missing) fails the release.

Needs PyPI (or PLUGHOST_PLUGIN_INDEX_URL's index) from this machine. `inflection` is a small
pure-Python package with no dependencies that the base set does not hold.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_support import NS, deploy, infer, status, upload
from ray_support import (
    RAY_AVAILABLE,
    RAY_SKIP_REASON,
    TEST_BACKENDS,
    ray_server_env,
)
from support import PIPELINE, LiveServer, unique_name, zip_bytes

EXTRA = "inflection==0.5.1"

MANIFEST = '''
feature_extractor_name = "{name}"
version = "1.0.0"
description = "plugin environment test"
dependencies = {dependencies!r}
features = []
'''

REALTIME = '''
from shared.plugins.inference.serve import BaseInferenceService


class Service(BaseInferenceService):
    def run_inference(self, inputs, parameters):
        import inflection

        return {"camel": inflection.camelize(inputs.get("text", "")),
                "module": inflection.__file__}
'''


def _legs() -> list[Any]:
    legs = [pytest.param("local", id="local")] if "local" in TEST_BACKENDS else []
    if "ray" in TEST_BACKENDS:
        marks = [] if RAY_AVAILABLE else [pytest.mark.skip(reason=RAY_SKIP_REASON)]
        legs.append(pytest.param("ray", id="ray", marks=marks))
    return legs


@pytest.fixture(scope="module", params=_legs())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    env = ray_server_env() if request.param == "ray" else {}
    srv = LiveServer(home=tmp_path_factory.mktemp(f"envs-{request.param}"), extra_env=env)
    try:
        yield srv.start()
    finally:
        srv.stop()


def _archive(name: str, dependencies: list[str]) -> bytes:
    return zip_bytes(
        {
            "manifest.py": MANIFEST.format(name=name, dependencies=dependencies),
            "pipeline.py": PIPELINE,
            "realtime.py": REALTIME,
        }
    )


def _deploy_and_watch(
    c: httpx.Client, name: str, dependencies: list[str], timeout: float = 180.0
) -> tuple[dict[str, Any], list[str], float]:
    """Upload and deploy; the final status body, every message seen, and the seconds from
    the deploy call to a final status."""
    plugin_id = upload(c, name, _archive(name, dependencies))
    started = time.monotonic()
    deploy(c, plugin_id)
    messages: list[str] = []
    deadline = started + timeout
    while time.monotonic() < deadline:
        body = status(c, plugin_id)
        if body.get("message") and (not messages or messages[-1] != body["message"]):
            messages.append(body["message"])
        if body["status"] in ("deployed", "failed"):
            return body, messages, time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{plugin_id} did not finish; saw {messages}")


def _event_messages(home: Path, release_id: int) -> list[str]:
    """The release's event messages, read from the server's SQLite database (the reuse
    note is replaced within milliseconds, faster than a status poll sees it)."""
    with contextlib.closing(sqlite3.connect(home / "plughost.db")) as db:
        rows = db.execute(
            "SELECT message FROM release_events WHERE release_id = ? ORDER BY id", (release_id,)
        ).fetchall()
    return [str(r[0]) for r in rows if r[0]]


def _assert_imported_from_the_environment(server: LiveServer, module: str) -> None:
    """The package came from the environment: read-only at /plugin-env in bubblewrap, from
    $PLUGHOST_HOME/envs otherwise (and from a Ray package on the Ray backend)."""
    if "PLUGHOST_BACKEND" in server.extra_env:
        assert "/envs/" not in module and "site-packages" not in module, module
        return
    layers = httpx.get(f"{server.url}/healthz", timeout=10).json()["sandbox"]["layers"]
    if layers["bwrap"]:
        assert module.startswith("/plugin-env/"), module
    else:
        assert module.startswith(str(server.home.resolve() / "envs")), module


def _environments(home: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((home / "envs").glob("*/env.json"))]


def test_missing_package_is_installed_then_reused_by_the_same_set(
    server: LiveServer, record_property: Any
) -> None:
    with server.client() as c:
        first, seen_first, cold_s = _deploy_and_watch(c, unique_name("envcold"), [EXTRA])
        assert first["status"] == "deployed", first
        assert "building the plugin environment: 1 package (inflection==0.5.1)" in seen_first
        reply = infer(c, first["route_prefix"], {"text": "plugin_environment"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["camel"] == "PluginEnvironment"
        _assert_imported_from_the_environment(server, reply.json()["module"])

        second, seen_second, warm_s = _deploy_and_watch(
            c, unique_name("envwarm"), ["numpy", "Inflection==0.5.1"]
        )
        assert second["status"] == "deployed", second
        assert not any(m.startswith("building") for m in seen_second), seen_second
        notes = _event_messages(server.home, second["release_id"])
        assert any(m.startswith("reusing the plugin environment") for m in notes), notes
        reply = infer(c, second["route_prefix"], {"text": "warm_start"})
        assert reply.json()["camel"] == "WarmStart"
    envs = _environments(server.home)
    assert [e["installed"] for e in envs] == [["inflection==0.5.1"]]
    record_property("deploy_cold_s", round(cold_s, 3))
    record_property("deploy_warm_s", round(warm_s, 3))
    print(f"\nplugin environment deploys: cold {cold_s:.2f} s, warm {warm_s:.2f} s")


def test_a_package_that_does_not_exist_fails_with_the_resolvers_message(
    server: LiveServer,
) -> None:
    with server.client() as c:
        body, _, _ = _deploy_and_watch(
            c, unique_name("envbad"), ["plughost-no-such-package-xyz==1.0"]
        )
    assert body["status"] == "failed", body
    assert body["error"].startswith("could not install the plugin's dependencies"), body
    assert "plughost-no-such-package-xyz" in body["error"]
    # uv wraps its message at the terminal width it finds (COLUMNS differs under xdist)
    assert "not found in the package registry" in " ".join(body["error"].split()), body["error"]


def test_an_invalid_requirement_fails_naming_it(server: LiveServer) -> None:
    with server.client() as c:
        body, _, _ = _deploy_and_watch(c, unique_name("envinvalid"), ["inflection>>>1"])
    assert body["status"] == "failed", body
    assert "invalid dependency 'inflection>>>1'" in body["error"], body


def test_with_installation_off_a_missing_package_fails_naming_it(tmp_path: Path) -> None:
    if "local" not in TEST_BACKENDS:
        pytest.skip("local backend not selected")
    srv = LiveServer(home=tmp_path, extra_env={"PLUGHOST_PLUGIN_INSTALL": "off"}).start()
    try:
        with srv.client() as c:
            body, _, _ = _deploy_and_watch(c, unique_name("envoff"), ["numpy", EXTRA])
    finally:
        srv.stop()
    assert body["status"] == "failed", body
    assert "missing dependencies" in body["error"] and EXTRA in body["error"], body
    assert "numpy" not in body["error"], body
    assert not (tmp_path / "envs").exists()


def test_undeploy_while_building_leaves_nothing_behind(server: LiveServer) -> None:
    name = unique_name("envcancel")
    # a set of its own, so it is built now (cancelling the uv run itself is a unit test)
    with server.client() as c:
        plugin_id = upload(c, name, _archive(name, [EXTRA, "tabulate==0.9.0"]))
        deploy(c, plugin_id)
        deadline = time.monotonic() + 60
        while not status(c, plugin_id).get("message", "").startswith("building"):
            assert time.monotonic() < deadline, status(c, plugin_id)
            time.sleep(0.01)
        resp = c.post(f"/v1/namespaces/{NS}/plugins/{plugin_id}/undeploy")
        assert resp.status_code == 200, resp.text
        body = status(c, plugin_id)
    assert body["status"] == "not_deployed", body
    builds = [p.name for p in (server.home / "envs").iterdir() if p.name.startswith(".build-")]
    assert builds == []
