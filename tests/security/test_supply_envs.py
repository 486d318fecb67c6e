"""Plugin environments as an attack surface, on a live server whose package index is a folder
of this test (no network): a dependency that exists only as an sdist with a build script is
refused with a plain message and its build script never runs (PLUGHOST_PLUGIN_ONLY_BINARY,
default on); dependencies that are URLs, paths or installer options are refused naming the
line; a look-alike of a popular name is warned about in the release's events and the log,
and deploys. (The sandboxed build of sdists, with the setting off, is
tests/security/test_supply_sdist_sandbox.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from supply_support import local_index, sdist_with_build_script, wheel
from support import PIPELINE, LiveServer, unique_name, zip_bytes

NS = "ns_default"
SDIST_ONLY = "plughost-sdist-probe"
LOOK_ALIKE = "numpyy"  # one edit from numpy; a wheel of that name is in the index

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
description = "supply-chain test plugin"
dependencies = {dependencies!r}
features = []
"""

REALTIME = """
from shared.plugins.inference.serve import BaseInferenceService


class Service(BaseInferenceService):
    def run_inference(self, inputs, parameters):
        import numpyy

        return {"value": numpyy.VALUE}
"""


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("supply-markers") / "sdist-build-ran"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, marker: Path) -> Iterator[LiveServer]:
    index = local_index(
        tmp_path_factory.mktemp("supply-index"),
        {
            SDIST_ONLY: {
                "plughost_sdist_probe-1.0.tar.gz": sdist_with_build_script(SDIST_ONLY, marker)
            },
            LOOK_ALIKE: {"numpyy-1.0-py3-none-any.whl": wheel(LOOK_ALIKE)},
        },
    )
    srv = LiveServer(
        home=tmp_path_factory.mktemp("supply-envs"), extra_env={"PLUGHOST_PLUGIN_INDEX_URL": index}
    )
    try:
        yield srv.start(timeout=120)
    finally:
        srv.stop()


def _deploy(
    c: httpx.Client, dependencies: list[str], timeout: float = 180.0
) -> tuple[str, dict[str, Any]]:
    name = unique_name("supply")
    archive = zip_bytes(
        {
            "manifest.py": MANIFEST.format(name=name, dependencies=dependencies),
            "pipeline.py": PIPELINE,
            "realtime.py": REALTIME,
        }
    )
    resp = c.post(
        f"/v1/namespaces/{NS}/plugins",
        data={"name": name, "version": "1.0.0"},
        files={"file": ("plugin.zip", archive, "application/zip")},
    )
    assert resp.status_code == 200 and resp.json()["success"], resp.text
    plugin_id = str(resp.json()["plugin_id"])
    assert c.post(f"/v1/namespaces/{NS}/plugins/{plugin_id}/deploy").status_code == 200
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = c.get(f"/v1/namespaces/{NS}/plugins/{plugin_id}/status").json()
        if body["status"] in ("deployed", "failed"):
            return plugin_id, body
        time.sleep(0.05)
    raise AssertionError(f"{plugin_id} did not finish: {body}")


def test_an_sdist_only_dependency_is_refused_and_its_build_script_never_runs(
    server: LiveServer, marker: Path
) -> None:
    with server.client() as c:
        _, body = _deploy(c, [SDIST_ONLY])
    assert body["status"] == "failed", body
    error = " ".join(body["error"].split())
    assert f"refused: {SDIST_ONLY} exists only as a source distribution" in error, error
    assert "PLUGHOST_PLUGIN_ONLY_BINARY" in error, error
    assert not marker.exists()
    assert not list(server.home.rglob("ran-build-script"))


REFUSED_LINES = [
    pytest.param("inflection @ https://example.invalid/inflection-0.5.1.tar.gz", id="name-at-url"),
    pytest.param("numpy @ https://example.invalid/numpy.whl", id="base-name-at-url"),
    pytest.param("git+https://example.invalid/evil.git", id="vcs"),
    pytest.param("https://example.invalid/evil-1.0.tar.gz", id="bare-url"),
    pytest.param("./vendored/evil", id="relative-path"),
    pytest.param("/opt/evil", id="absolute-path"),
    pytest.param("file:///opt/evil", id="file-url"),
    pytest.param("evil-1.0-py3-none-any.whl", id="wheel-file"),
    pytest.param("-e .", id="editable"),
    pytest.param("--index-url https://evil.invalid/simple", id="index-url"),
    pytest.param("--extra-index-url https://evil.invalid/simple", id="extra-index-url"),
    pytest.param("-f https://evil.invalid/links", id="find-links"),
    pytest.param("-r other.txt", id="requirements-file"),
]


@pytest.mark.parametrize("line", REFUSED_LINES)
def test_url_path_and_option_lines_are_refused_naming_the_line(
    server: LiveServer, line: str
) -> None:
    with server.client() as c:
        _, body = _deploy(c, ["tabulate", line])
    assert body["status"] == "failed", body
    assert f"dependency {line!r} is refused" in body["error"], body
    assert not (server.home / "envs").exists() or not any(
        p.name.startswith(".build-") for p in (server.home / "envs").iterdir()
    )


def test_a_look_alike_of_a_popular_name_is_warned_about_and_still_deploys(
    server: LiveServer,
) -> None:
    with server.client() as c:
        plugin_id, body = _deploy(c, [LOOK_ALIKE])
        assert body["status"] == "deployed", body
        reply = c.post(body["route_prefix"], json={"inputs": {}, "parameters": {}})
        assert reply.status_code == 200 and reply.json()["value"] == 42, reply.text
        history = c.get(f"/v1/namespaces/{NS}/plugins/{plugin_id}/deployments").json()
    messages = [e.get("message") or "" for d in history["deployments"] for e in d["events"]]
    warning = (
        f"warning: dependency {LOOK_ALIKE!r} is one edit away from the popular package 'numpy'"
    )
    assert any(m.startswith(warning) for m in messages), messages
    assert server.log_path is not None
    assert warning in server.log_path.read_text(errors="replace")
