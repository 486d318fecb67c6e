"""Plugins written the way Mixpeek's docs and templates write them run on plughost unchanged.

Two plugins of our own live in ``mixpeek_plugins/``:
- ``attr_style``: attribute-style manifest, a package with relative imports, a service that
  only defines ``_process_single`` and carries ``serve_config = ServeDeploymentConfig(
  num_replicas=2)``, logs through ``self.logger``, and a pipeline of ``StepDefinition``s
  with row conditions;
- ``pydantic_style``: ``metadata`` + pydantic manifest, an async ``run_inference`` service
  with its own fallback base class, named by ``__all__``, and a pipeline of plain callables
  with a ``prepare`` that filters the dataset.

Each is packed as Mixpeek's ``publish`` packs it (tar.gz with a top folder, sent through the
presigned upload or the SDK's one-step upload) and as a flat zip (a multipart form),
validated, deployed and called on its route prefix and its alias on every backend of
``PLUGHOST_TEST_BACKENDS``. The Ray leg deploys each plugin once (its tar.gz) to keep its time
down. The pipelines are checked in process.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest
from deploy_support import NS, deploy, infer, wait_for
from mixpeek.api.custom_plugins_namespace_api import CustomPluginsNamespaceApi
from ray_support import RAY_AVAILABLE, RAY_SKIP_REASON, TEST_BACKENDS, ray_server_env
from support import LiveServer, dir_files, sdk_client, tar_gz_bytes, unique_name, zip_bytes

import plughost

PLUGINS = Path(__file__).resolve().parent / "mixpeek_plugins"
RUNTIME_API = Path(plughost.__file__).resolve().parent / "runtime_api"
PACKINGS = ["tar.gz", "zip"]


def _backends() -> list[Any]:
    legs = [pytest.param("local", id="local")] if "local" in TEST_BACKENDS else []
    if "ray" in TEST_BACKENDS:
        marks = [] if RAY_AVAILABLE else [pytest.mark.skip(reason=RAY_SKIP_REASON)]
        legs.append(pytest.param("ray", id="ray", marks=marks))
    return legs


@pytest.fixture(scope="module", params=_backends())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One live server (SQLite) per backend; the Ray one owns a local Ray."""
    backend = request.param
    env = ray_server_env() if backend == "ray" else {}
    srv = LiveServer(home=tmp_path_factory.mktemp(f"home-mixpeek-{backend}"), extra_env=env)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def on_ray(server: LiveServer) -> bool:
    return server.extra_env.get("PLUGHOST_BACKEND") == "ray"


# -- packing and uploading --------------------------------------------------------------------
def pack(plugin: str, packing: str) -> bytes:
    """tar.gz with the plugin's folder on top (as `mixpeek plugin publish` packs), or flat zip."""
    files = dir_files(PLUGINS / plugin)
    return tar_gz_bytes(files, folder=f"{plugin}/") if packing == "tar.gz" else zip_bytes(files)


def upload_presigned(c: httpx.Client, name: str, archive: bytes) -> dict[str, Any]:
    """The SDK's flow: ask for an upload URL, PUT the bytes, confirm with the ETag."""
    up = c.post(f"/v1/namespaces/{NS}/plugins/uploads", json={"name": name, "version": "1.0.0"})
    assert up.status_code == 200, up.text
    put = httpx.put(
        up.json()["presigned_url"], content=archive, headers={"Content-Type": "application/zip"}
    )
    assert put.status_code == 200, put.text
    done = c.post(
        f"/v1/namespaces/{NS}/plugins/uploads/{up.json()['upload_id']}/confirm",
        json={"etag": put.headers["ETag"]},
    )
    assert done.status_code == 200, done.text
    return dict(done.json())


def upload_multipart(c: httpx.Client, name: str, archive: bytes, filename: str) -> dict[str, Any]:
    resp = c.post(
        f"/v1/namespaces/{NS}/plugins",
        data={"name": name, "version": "1.0.0"},
        files={"file": (filename, archive, "application/octet-stream")},
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def upload_sdk(server: LiveServer, name: str, archive: bytes) -> dict[str, Any]:
    """The SDK's one-step upload (its `file` is documented as a .tar.gz archive)."""
    api = CustomPluginsNamespaceApi(sdk_client(server))
    return dict(
        api.upload_plugin_namespaces(NS, file=archive, name=name, version="1.0.0").to_dict()
    )


# How each packing reaches the server: Mixpeek's publish flow (presigned PUT) and the SDK's
# one-step upload for the tar.gz archives, a multipart form for the flat zips.
UPLOAD_VIA = {
    ("attr_style", "tar.gz"): "presigned",
    ("pydantic_style", "tar.gz"): "sdk",
    ("attr_style", "zip"): "multipart",
    ("pydantic_style", "zip"): "multipart",
}


def upload_packed(
    server: LiveServer, c: httpx.Client, plugin: str, packing: str
) -> tuple[str, str]:
    """Upload `plugin` packed as `packing` under a fresh name; (name, plugin_id), validated."""
    name = unique_name(plugin.split("_")[0])
    archive = pack(plugin, packing)
    via = UPLOAD_VIA[(plugin, packing)]
    if via == "presigned":
        body = upload_presigned(c, name, archive)
    elif via == "sdk":
        body = upload_sdk(server, name, archive)
    else:
        body = upload_multipart(c, name, archive, f"{plugin}.zip")
    assert body["success"] is True, body
    assert body["validation_status"] == "passed", body
    assert not body.get("validation_errors"), body
    return name, str(body["plugin_id"])


def deploy_and_wait(c: httpx.Client, plugin_id: str) -> tuple[str, dict[str, Any]]:
    route = str(deploy(c, plugin_id)["route_prefix"])
    body, seen = wait_for(c, plugin_id, {"deployed", "failed"}, timeout=120)
    # the plugin's error and the message first: pytest shortens a long dict
    assert body["status"] == "deployed", (seen, body.get("error"), body.get("message"), body)
    return route, body


def call(c: httpx.Client, route: str, inputs: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    resp = infer(c, route, inputs, parameters)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def wait_for_log(server: LiveServer, needle: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in server.logs():
            return True
        time.sleep(0.1)
    return False


def replicas_answering(server: LiveServer, route: str, rounds: int = 4) -> set[str]:
    """Replica tokens seen over rounds of six concurrent slow calls (stops once two show)."""
    seen: set[str] = set()
    for _ in range(rounds):
        barrier = threading.Barrier(6)

        def slow_call(barrier: threading.Barrier = barrier) -> None:
            with server.client() as lc:
                barrier.wait()
                seen.add(call(lc, route, {"text": "slow", "delay": 0.3})["replica"])

        threads = [threading.Thread(target=slow_call) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        if len(seen) >= 2:
            break
    return seen


# -- validation, deploy and realtime calls ----------------------------------------------------
@pytest.mark.parametrize("packing", PACKINGS)
def test_attr_style_plugin_deploys_on_its_class_serve_config_and_serves(
    server: LiveServer, packing: str
) -> None:
    with server.client() as c:
        name, pid = upload_packed(server, c, "attr_style", packing)
        if on_ray(server) and packing != "tar.gz":
            return  # one deploy per plugin on Ray; this packing was validated above
        stored = c.get(f"/v1/namespaces/{NS}/plugins/{pid}").json()["plugin"]["manifest"]
        assert stored["serve_config"]["num_replicas"] == 2, stored  # read from the class
        route, body = deploy_and_wait(c, pid)
        assert route == f"/inference/{NS}/custom_plugin_{pid}"
        if not on_ray(server):
            assert "2 replica" in str(body.get("message")), body

        marker = uuid.uuid4().hex
        text = "  Hello   Mixpeek  World "
        expected = {"normalised": "hello mixpeek world", "word_count": 3, "tag": "short"}
        for target in (route, f"/inference/{NS}/{name}"):
            answer = call(c, target, {"text": text, "marker": marker})
            assert {k: answer[k] for k in expected} == expected, answer
        shouted = call(c, route, {"text": "one two three four five six"}, upper=True)
        assert shouted["normalised"] == "ONE TWO THREE FOUR FIVE SIX"
        assert shouted["word_count"] == 6 and shouted["tag"] == "long"

        # the class attribute's num_replicas=2: two distinct replicas answer
        assert len(replicas_answering(server, route)) == 2
        if not on_ray(server):
            # local replicas' stderr is the server's log; Ray replicas log on the Ray side
            assert wait_for_log(server, f"attr_style marker={marker} words=3"), server.logs()[
                -3000:
            ]


@pytest.mark.parametrize("packing", PACKINGS)
def test_pydantic_style_plugin_with_fallback_base_deploys_and_serves(
    server: LiveServer, packing: str
) -> None:
    with server.client() as c:
        name, pid = upload_packed(server, c, "pydantic_style", packing)
        if on_ray(server) and packing != "tar.gz":
            return  # one deploy per plugin on Ray; this packing was validated above
        route, _ = deploy_and_wait(c, pid)

        marker = uuid.uuid4().hex
        inputs = {"text": "The Cat sat on the mat; no dog.", "marker": marker}
        for target in (route, f"/inference/{NS}/{name}"):
            answer = call(c, target, inputs, keywords=["cat", "mat", "bird"])
            assert answer == {"keywords": ["cat", "mat"], "count": 2}, answer
        strict = call(c, route, inputs, keywords=["cat", "dog"], case_sensitive=True)
        assert strict == {"keywords": ["dog"], "count": 1}
        assert call(c, route, {"text": "a dog"}) == {"keywords": ["dog"], "count": 1}
        if not on_ray(server):
            assert wait_for_log(server, f"pydantic_style marker={marker} found=2"), server.logs()[
                -3000:
            ]


def test_manifest_importing_the_runtime_api_passes_validation(server: LiveServer) -> None:
    """The manifest is read in a separate child; the runtime API is importable there too."""
    manifest = """
from shared.plugins.inference.serve import ServeDeploymentConfig
from engine.plugins.extractors.pipeline import ResourceType, RowCondition

feature_extractor_name = "runtime_manifest"
version = "v1"
description = "imports the runtime API"
features = []
RESOURCE = ResourceType.CPU
CONDITION = RowCondition.IS_TEXT
DEFAULT_SERVE = ServeDeploymentConfig(num_replicas=1)
"""
    files = {
        "manifest.py": manifest,
        "pipeline.py": "def build_steps(extractor_request, container=None, **kw):\n"
        "    return {'steps': [], 'prepare': lambda ds: ds}\n",
    }
    with server.client() as c:
        body = upload_multipart(c, unique_name("rtman"), tar_gz_bytes(files, "rt/"), "rt.tar.gz")
    assert body["validation_status"] == "passed", body
    assert body["success"] is True


# -- pipelines, in process ----------------------------------------------------------------------
# plughost's batch runner (which will run these pipelines on uploaded datasets) is a later
# issue; until it lands, build_steps is loaded here with the runtime API on sys.path and its
# steps are applied in order to a small DataFrame, the way that runner will apply them.
class RowDataset:
    """A stand-in for the dataset `prepare` receives (Ray Data's `filter(fn)` on row dicts)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def filter(self, fn: Callable[[dict[str, Any]], bool]) -> RowDataset:
        return RowDataset([row for row in self.rows if fn(row)])


def extractor_request(parameters: dict[str, Any], top_level: dict[str, Any] | None = None) -> Any:
    config = SimpleNamespace(parameters=parameters, input_mappings={"text": "text"})
    return SimpleNamespace(extractor_config=config, parameters=top_level or {})


@pytest.fixture
def load_pipeline(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Loads a plugin's pipeline.py the way a worker does: runtime API and plugin folder on
    sys.path, the plugin folder as a package (for relative imports)."""
    loaded: list[str] = []

    def load(plugin: str) -> ModuleType:
        folder = PLUGINS / plugin
        monkeypatch.syspath_prepend(str(RUNTIME_API))
        monkeypatch.syspath_prepend(str(folder))
        package = f"mixpeek_test_{plugin}_{uuid.uuid4().hex[:6]}"
        init = folder / "__init__.py"
        spec: importlib.machinery.ModuleSpec | None
        if init.is_file():
            spec = importlib.util.spec_from_file_location(
                package, init, submodule_search_locations=[str(folder)]
            )
        else:
            spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
            spec.submodule_search_locations = [str(folder)]
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        loaded.append(package)
        if spec.loader is not None:
            spec.loader.exec_module(module)
        return importlib.import_module(f"{package}.pipeline")

    before = set(sys.modules)
    yield load
    # the plugin's modules and the runtime API leave with the test, so no later test imports
    # them from here by accident
    for name in set(sys.modules) - before:
        if name.split(".")[0] in {"processors", "shared", "engine", *loaded}:
            del sys.modules[name]


def mixed_rows() -> list[dict[str, Any]]:
    return [
        {"id": 0, "mime_type": "text/plain", "text": "a cat and a dog", "url": None},
        {"id": 1, "mime_type": "image/png", "text": None, "url": "file:///data/cat.png"},
        {"id": 2, "mime_type": "text/plain", "text": "one two three four five six", "url": None},
        {"id": 3, "mime_type": "image/png", "text": None, "url": "file:///data/dog.png"},
        {"id": 4, "mime_type": "text/plain", "text": "", "url": None},
    ]


def run_steps(steps: list[Callable[[Any], Any]], frame: Any) -> Any:
    for step in steps:
        frame = step(frame)
    return frame


def test_attr_style_pipeline_applies_row_conditions(
    load_pipeline: Callable[[str], ModuleType],
) -> None:
    import pandas as pd

    pipeline = load_pipeline("attr_style")
    built = pipeline.build_steps(
        extractor_request({"image_prefix": "pic", "stamp": "s1"}), container=None, dataset_size=5
    )
    steps = built["steps"] if isinstance(built, dict) else list(built)
    assert len(steps) == 3, steps  # the disabled step is left out
    frame = run_steps(steps, pd.DataFrame(mixed_rows()))
    rows = {int(r["id"]): r for r in frame.to_dict("records")}

    assert sorted(rows) == [0, 1, 2, 3, 4]
    assert [rows[i]["word_count"] for i in (0, 2, 4)] == [5, 6, 0]
    assert [rows[i]["length_tag"] for i in (0, 2, 4)] == ["short", "long", "short"]
    assert [rows[i]["image_tag"] for i in (1, 3)] == ["pic:cat.png", "pic:dog.png"]
    for i in (1, 3):  # image rows passed through the text step unchanged
        assert pd.isna(rows[i].get("word_count")) and pd.isna(rows[i].get("length_tag"))
        assert rows[i]["url"] == mixed_rows()[i]["url"]
    for i in (0, 2, 4):  # and text rows through the image step
        assert pd.isna(rows[i].get("image_tag"))
        assert rows[i]["text"] == mixed_rows()[i]["text"]
    assert {r["stamp"] for r in rows.values()} == {"s1"}


def test_pydantic_style_pipeline_prepares_and_passes_other_rows_through(
    load_pipeline: Callable[[str], ModuleType],
) -> None:
    import pandas as pd

    pipeline = load_pipeline("pydantic_style")
    built = pipeline.build_steps(
        extractor_request({"keywords": ["cat", "dog", "three"]}, top_level={"keywords": ["x"]})
    )
    prepared = built["prepare"](RowDataset(mixed_rows()))
    assert [r["id"] for r in prepared.rows] == [0, 1, 2, 3]  # the empty text row is dropped
    frame = run_steps(built["steps"], pd.DataFrame(prepared.rows))
    rows = {int(r["id"]): r for r in frame.to_dict("records")}

    assert rows[0]["keywords"] == ["cat", "dog"] and rows[0]["keyword_count"] == 2
    assert rows[2]["keywords"] == ["three"] and rows[2]["keyword_count"] == 1
    for i in (1, 3):
        assert rows[i]["keywords"] is None and rows[i]["keyword_count"] == 0
        assert rows[i]["url"] == mixed_rows()[i]["url"]
