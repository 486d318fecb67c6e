"""A real replica process loads a namespace model while its service is constructed (before
any server takes container calls) and when called: both loads reach the server's container
handler as load reports, the first once the server's connection offers container calls."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plughost.backends.local.replica import ReplicaProcess, ReplicaSpec

REALTIME = """
from engine.models import load_namespace_model
from shared.plugins.inference.serve import BaseInferenceService


class Service(BaseInferenceService):
    def __init__(self):
        super().__init__()
        self.folder = load_namespace_model("tiny_1_0_0")

    def run_inference(self, inputs, parameters):
        try:
            load_namespace_model("absent_1_0_0")
        except RuntimeError as exc:
            return {"folder": self.folder, "error": str(exc)}
        return {"folder": self.folder}
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="phm", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_load_reports_reach_the_server_including_those_made_while_constructing(
    workdir: Path,
) -> None:
    models = workdir / "models"
    (models / "tiny_1_0_0").mkdir(parents=True)
    (models / "tiny_1_0_0" / "config.json").write_text("{}")
    (models / "index.json").write_text(json.dumps({"models": {"tiny_1_0_0": {
        "name": "tiny", "version": "1.0.0", "model_format": "huggingface", "path": "tiny_1_0_0",
    }}}))
    plugin = workdir / "plugin"
    plugin.mkdir()
    (plugin / "realtime.py").write_text(textwrap.dedent(REALTIME))
    seen: list[Any] = []

    async def container(request: Any) -> dict[str, Any]:
        seen.append(request)
        return {"ok": True, "result": None}

    spec = ReplicaSpec(
        plugin_dir=plugin, socket_path=workdir / "r.sock", container=container,
        env={"PLUGHOST_MODELS_DIR": str(models)},
    )

    async def scenario() -> Any:
        replica = await ReplicaProcess.start(spec)
        try:
            answer = await replica.call_raw(b'{"inputs": {}, "parameters": {}}')
            deadline = time.monotonic() + 10
            while len(seen) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await replica.stop()
        return json.loads(answer)

    answer = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert answer["folder"] == str((models / "tiny_1_0_0").resolve())
    assert "'absent_1_0_0' is not in this namespace" in answer["error"]
    reports = sorted((r["args"]["model"], r["args"]["outcome"]) for r in seen)
    assert reports == [("absent_1_0_0", "failed"), ("tiny_1_0_0", "ok")]
    assert all(r["target"] == "models.load_report" for r in seen)
    assert all(0 <= r["args"]["seconds"] < 10 for r in seen)
