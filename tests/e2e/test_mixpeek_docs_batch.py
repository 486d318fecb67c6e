"""Batch jobs of plugins written the way Mixpeek's documentation writes them, through a live
server on the local backend and on Ray (sandboxed workers on both), packed as ``mixpeek plugin publish`` packs
a plugin folder: a tar.gz with the folder on top, no ``__init__.py``.

- the quick start's style: a module-level manifest with ``input_mappings = {"text": "text"}``,
  a processor class reading the ``data`` column, ``build_steps`` without ``**kwargs`` and an
  ``extract`` returning an object with ``.steps``; the input has a ``text`` column;
- the SDK helpers as the docs call them (``parallel_io(items=, process_fn=)``,
  ``concurrent_api_calls(items=, async_fn=)``, ``download_asset`` -> ``(path, is_temp)``) over
  binary content, which reaches the step as ``data:`` URIs;
- a step reading a column the rows lack fails the job with its own KeyError.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from batch_support import download, wait_batch
from ray_support import RAY_AVAILABLE, RAY_SKIP_REASON, ray_server_env
from support import LiveServer, unique_name

QUICKSTART_MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
description = "digest embeddings of text, quick start style"
dependencies = []
features = [
    {{
        "feature_type": "embedding",
        "feature_name": "digest_embedding",
        "embedding_dim": 8,
        "distance_metric": "cosine",
    }}
]
output_schema = {{"digest_embedding": {{"type": "array", "items": {{"type": "number"}}}}}}
input_mappings = {{"text": "text"}}
tier = 1
tier_label = "SIMPLE"
compute_profile = {{"resource_type": "cpu"}}
"""

QUICKSTART_PIPELINE = """
import hashlib

import pandas as pd


def digest_vector(text, dim=8):
    raw = hashlib.sha256(text.encode("utf-8")).digest()
    return [round(b / 255.0, 6) for b in raw[:dim]]


class DigestProcessor:
    def __init__(self, config=None, **kwargs):
        self.config = config or {}
        self.column = "data"  # every custom plugin reads its content from here

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.reset_index(drop=True)
        batch["digest_embedding"] = [
            digest_vector("" if v is None else str(v)) for v in batch[self.column]
        ]
        batch["doc"] = list(batch["document_id"])
        batch["kind"] = list(batch["mime_type"])
        return batch


def build_steps(extractor_request=None, container=None, base_steps=None, dataset_size=None,
                content_flags=None):
    steps = list(base_steps or [])
    steps.append(DigestProcessor())
    return {"steps": steps, "prepare": lambda ds: ds}


class _Built:
    def __init__(self, steps, prepare):
        self.steps = steps
        self.prepare = prepare


def extract(extractor_request=None, base_steps=None, dataset_size=None, content_flags=None):
    built = build_steps(extractor_request, base_steps=base_steps, dataset_size=dataset_size)
    return _Built(built["steps"], built["prepare"])
"""

HELPERS_MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
description = "asset sizes and digests through the SDK helpers"
dependencies = []
features = []
compute_profile = {{"resource_type": "api", "batch_size": 4}}
"""

HELPERS_PIPELINE = """
import hashlib
import os

from shared.plugins import download_asset
from shared.plugins.sdk import concurrent_api_calls, parallel_io


class AssetProbe:
    def __init__(self, config, **kwargs):
        self.config = config or {}

    def __call__(self, batch):
        urls = batch["data"].tolist()

        def size_of(url):
            path, is_temp = download_asset(url, suffix=".bin")
            try:
                size = os.path.getsize(path)
            finally:
                if is_temp:
                    os.unlink(path)
            if size == 0:
                raise ValueError("empty asset")
            return size

        sizes = parallel_io(items=urls, process_fn=size_of, max_workers=8)

        async def digest(url):
            if url.startswith("data:application/octet-stream"):
                raise ValueError("unknown content")
            return hashlib.sha256(url.encode()).hexdigest()[:16]

        digests = concurrent_api_calls(items=urls, async_fn=digest, max_concurrent=3)
        batch = batch.copy()
        batch["size"] = [sizes[i] if i in sizes else -1 for i in range(len(urls))]
        batch["digest"] = [d if d else "" for d in digests]
        batch["kind"] = batch["mime_type"].tolist()
        return batch


def build_steps(extractor_request, container=None, **kwargs):
    return {"steps": [AssetProbe({})]}
"""


def digest_vector(text: str, dim: int = 8) -> list[float]:
    raw = hashlib.sha256(text.encode("utf-8")).digest()
    return [round(b / 255.0, 6) for b in raw[:dim]]


def published(tmp_path: Path, folder: str, files: dict[str, str]) -> bytes:
    """The folder as ``mixpeek plugin publish`` sends it: a tar.gz with the folder on top."""
    root = tmp_path / folder
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(root, arcname=folder)
    return buf.getvalue()


@pytest.fixture(
    scope="module",
    params=[
        "local",
        pytest.param("ray", marks=pytest.mark.skipif(not RAY_AVAILABLE, reason=RAY_SKIP_REASON)),
    ],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    env = {"PLUGHOST_BATCH_CHUNK_ROWS": "16"}
    if request.param == "ray":
        env.update(ray_server_env())
    live = LiveServer(home=tmp_path_factory.mktemp(f"docs-batch-{request.param}"), extra_env=env)
    live.start(timeout=180)
    try:
        yield live
    finally:
        live.stop(timeout=60)


def upload(server: LiveServer, archive: bytes, name: str) -> str:
    with server.client() as c:
        r = c.post(
            "/v1/namespaces/ns_default/plugins",
            files={"file": (f"{name}.tar.gz", archive, "application/gzip")},
            data={"name": name, "version": "1.0.0"},
        )
    body = r.json()
    assert r.status_code == 200 and body.get("validation_status") == "passed", body
    return str(body["plugin_id"])


def run_job(
    server: LiveServer, plugin_id: str, content: bytes, file_name: str
) -> dict[str, object]:
    with server.client() as c:
        r = c.post(
            f"/v1/namespaces/ns_default/plugins/{plugin_id}/batches",
            files={"file": (file_name, content, "application/octet-stream")},
        )
    assert r.status_code == 202, r.text
    return wait_batch(server, r.json()["status_endpoint"], timeout=300)


def output(body: dict[str, object], tmp_path: Path) -> pd.DataFrame:
    assert body["status"] == "completed", body
    return pd.read_parquet(download(str(body["output_url"]), tmp_path / "out.parquet"))


@pytest.fixture(scope="module")
def quickstart(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    name = unique_name("qs")
    files = {
        "manifest.py": QUICKSTART_MANIFEST.format(name=name),
        "pipeline.py": QUICKSTART_PIPELINE,
    }
    return upload(server, published(tmp_path_factory.mktemp("qs"), name, files), name)


@pytest.fixture(scope="module")
def helpers(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    name = unique_name("sdk")
    files = {"manifest.py": HELPERS_MANIFEST.format(name=name), "pipeline.py": HELPERS_PIPELINE}
    return upload(server, published(tmp_path_factory.mktemp("sdk"), name, files), name)


def test_the_quick_start_style_reads_data_over_a_csv_of_text(
    server: LiveServer, quickstart: str, tmp_path: Path
) -> None:
    texts = [f"document number {i}" for i in range(40)]
    rows = pd.DataFrame({"text": texts, "lang": ["en"] * 40})
    body = run_job(server, quickstart, rows.to_csv(index=False).encode(), "articles.csv")
    out = output(body, tmp_path)
    assert body["rows_done"] == 40 and body["rows_failed"] == 0
    # the input's columns plus what the step added; plughost's own columns stay out
    assert list(out.columns) == ["text", "lang", "digest_embedding", "doc", "kind"]
    assert list(out["text"]) == texts
    assert [list(v) for v in out["digest_embedding"]] == [digest_vector(t) for t in texts]
    assert list(out["doc"]) == [f"doc_{i}" for i in range(40)]
    assert set(out["kind"]) == {"text/plain"}


def test_the_quick_start_style_over_jsonl_strings_keeps_their_data_column(
    server: LiveServer, quickstart: str, tmp_path: Path
) -> None:
    lines = ['"first line of text"', '"second one"', '"third"']
    body = run_job(server, quickstart, ("\n".join(lines) + "\n").encode(), "lines.jsonl")
    out = output(body, tmp_path)
    assert list(out["data"]) == ["first line of text", "second one", "third"]
    assert [list(v) for v in out["digest_embedding"]] == [
        digest_vector(t) for t in ["first line of text", "second one", "third"]
    ]


def test_the_sdk_helpers_as_the_docs_call_them_over_binary_content(
    server: LiveServer, helpers: str, tmp_path: Path
) -> None:
    blobs = [b"\x89PNG\r\n\x1a\n" + b"p" * 10, b"\xff\xd8\xff" + b"j" * 20, b"\x00unknown", b""]
    frame = pd.DataFrame({"image": blobs})
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    out = output(run_job(server, helpers, buf.getvalue(), "images.parquet"), tmp_path)
    assert list(out["image"]) == blobs  # the input's bytes, not the URIs the step saw
    # parallel_io: the empty asset raised, so it is absent from the dict (-1 here)
    assert list(out["size"]) == [18, 23, 8, -1]
    kinds = ["image/png", "image/jpeg", "application/octet-stream", "application/octet-stream"]
    assert list(out["kind"]) == kinds
    uris = [f"data:{k};base64,{base64.b64encode(b).decode()}" for k, b in zip(kinds, blobs)]
    expected = [hashlib.sha256(u.encode()).hexdigest()[:16] for u in uris[:2]]
    # concurrent_api_calls: None for the calls that raised, in item order
    assert list(out["digest"]) == [*expected, "", ""]


def test_a_step_reading_a_column_the_rows_lack_fails_with_its_keyerror(
    server: LiveServer, helpers: str
) -> None:
    body = run_job(server, helpers, b"a,b\n1,2\n3,4\n", "numbers.csv")
    assert body["status"] == "failed", body
    message = str(body["message"])
    assert "rows 0-1 failed: KeyError: 'data'" in message
    assert "columns: a, b, document_id, object_id" in message
