"""Helpers of the batch tests: plugins, inputs, polling, and the steps run by hand."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from support import LiveServer, dir_files, zip_bytes

DONE = ("completed", "failed", "cancelled")

MANIFEST = """
feature_extractor_name = "{name}"
version = "v1"
description = "batch test plugin"
dependencies = []
features = [{{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 2,
             "distance_metric": "cosine"}}]
output_schema = {{"type": "object"}}
input_mappings = {{"text": "text"}}
compute_profile = {{"batch_size": {batch_size}, "max_concurrency": 2}}
"""

# steps: `length` adds len(text); rows whose text contains "boom" make the batch raise;
# rows whose text contains "slow" sleep; prepare drops rows whose text starts with "drop".
PIPELINE = """
import time
import pandas as pd


def prepare(ds):
    return ds.filter(lambda row: not str(row["text"]).startswith("drop"))


def length_step(batch):
    texts = [str(t) for t in batch["text"]]
    if any("boom" in t for t in texts):
        raise ValueError("boom in this batch")
    for t in texts:
        if "slow" in t:
            time.sleep(0.05)
    batch = batch.copy()
    batch["length"] = [len(t) for t in texts]
    return batch


def build_steps(extractor_request, container=None, base_steps=None, dataset_size=None,
                content_flags=None):
    factor = extractor_request.extractor_config.parameters.get("factor", 1)

    def scaled(batch):
        batch = batch.copy()
        batch["scaled"] = [n * factor for n in batch["length"]]
        return batch

    return {"steps": [length_step, scaled], "prepare": prepare}
"""


def batch_plugin_files(name: str, batch_size: int = 8) -> dict[str, str | bytes]:
    return {
        "manifest.py": MANIFEST.format(name=name, batch_size=batch_size),
        "pipeline.py": PIPELINE,
    }


def upload(
    server: LiveServer, files: dict[str, str | bytes], name: str, ns: str = "ns_default"
) -> str:
    with server.client() as c:
        r = c.post(
            f"/v1/namespaces/{ns}/plugins",
            files={"file": ("p.zip", zip_bytes(files), "application/zip")},
            data={"name": name, "version": "1.0.0"},
        )
    body = r.json()
    assert r.status_code == 200 and body.get("validation_status") == "passed", body
    return str(body["plugin_id"])


def upload_example(server: LiveServer, folder: Path, name: str) -> str:
    return upload(server, dir_files(folder), name)  # type: ignore[arg-type]


def submit(
    server: LiveServer,
    plugin_id: str,
    content: bytes,
    file_name: str,
    parameters: dict[str, Any] | None = None,
    on_error: str | None = None,
    ns: str = "ns_default",
) -> httpx.Response:
    data: dict[str, str] = {}
    if parameters is not None:
        import json

        data["parameters"] = json.dumps(parameters)
    if on_error is not None:
        data["on_error"] = on_error
    with server.client() as c:
        return c.post(
            f"/v1/namespaces/{ns}/plugins/{plugin_id}/batches",
            files={"file": (file_name, content, "application/octet-stream")},
            data=data,
        )


def wait_batch(
    server: LiveServer, endpoint: str, timeout: float = 120.0, until: tuple[str, ...] = DONE
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with server.client() as c:
        while time.monotonic() < deadline:
            body = c.get(endpoint).json()
            if body.get("status") in until:
                return dict(body)
            time.sleep(0.2)
    raise AssertionError(f"batch not {until} in {timeout}s: {body}\n{server.logs()[-3000:]}")


def download(url: str, target: Path) -> Path:
    with httpx.stream("GET", url, timeout=60) as r:
        assert r.status_code == 200, r.read()
        with target.open("wb") as out:
            for chunk in r.iter_bytes():
                out.write(chunk)
    return target


BY_HAND = r"""
import importlib.util, sys
from pathlib import Path
import pandas as pd
from plughost.runtime_api import RUNTIME_API_DIR
from plughost.runtime_api.extractor_request import build_extractor_request
from plughost.batch.dataset import LocalDataset

plugin, rows_path, out_path, params, mappings, batch_size = sys.argv[1:7]
sys.path[:0] = [plugin, str(RUNTIME_API_DIR)]
spec = importlib.util.spec_from_file_location("by_hand_pipeline", Path(plugin) / "pipeline.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import json
request = build_extractor_request(json.loads(params), json.loads(mappings))
built = module.build_steps(request)
frame = pd.read_parquet(rows_path)
if built.get("prepare"):
    frame = built["prepare"](LocalDataset.from_pandas(frame)).to_pandas()
frame = frame.reset_index(drop=True)
parts = []
size = int(batch_size)
for start in range(0, len(frame), size):
    batch = frame.iloc[start:start + size].reset_index(drop=True)
    for step in built["steps"]:
        batch = step(batch)
    parts.append(batch)
pd.concat(parts, ignore_index=True).to_parquet(out_path)
"""


def steps_by_hand(
    plugin_dir: Path,
    rows: Any,
    tmp: Path,
    batch_size: int,
    params: dict[str, Any] | None = None,
    mappings: dict[str, Any] | None = None,
) -> Any:
    """The pipeline's prepare and steps run in a plain process over ``rows`` (a DataFrame)."""
    import json

    import pandas as pd

    rows_path, out_path = tmp / "by-hand-in.parquet", tmp / "by-hand-out.parquet"
    rows.to_parquet(rows_path)
    subprocess.run(
        [
            sys.executable,
            "-c",
            BY_HAND,
            str(plugin_dir),
            str(rows_path),
            str(out_path),
            json.dumps(params or {}),
            json.dumps(mappings or {}),
            str(batch_size),
        ],
        check=True,
        timeout=120,
    )
    return pd.read_parquet(out_path)
