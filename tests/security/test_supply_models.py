"""Namespace model archives as an attack surface, uploaded over HTTP to the app in process
(SQLite, a small PLUGHOST_MODEL_MAX_BYTES): a pickle that would run code is never unpickled
by the server (the marker its ``__reduce__`` writes never appears, at upload, listing or
inspection), safetensors headers that lie about their offsets are refused with the reason,
and an archive past the limit (uploaded, or unpacked as a bomb) is refused with nothing kept
in the server's archive store or model folders. (The unit checks of each format are in
tests/unit/archive/test_model_intake.py.)"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from inproc import InProcessServer
from model_support import model_tar, safetensors_bytes
from support import unique_name

from plughost.archive.model_formats import LEGACY_TORCH_MAGIC

NS = "ns_default"
LIMIT = 300_000


class Bomb:
    """Unpickling it writes the marker (the shape of a malicious checkpoint)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.marker.write_text, ("unpickled on the server",))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    overrides = {"model_max_bytes": LIMIT, "multipart_overhead_bytes": 16_384}
    srv = InProcessServer(home=tmp_path_factory.mktemp("supply-models"), overrides=overrides)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pickle-ran"


def _post(app: InProcessServer, name: str, data: bytes, fmt: str, filename: str) -> httpx.Response:
    with app.client() as c:
        return c.post(
            f"/v1/namespaces/{NS}/models",
            data={"name": name, "version": "1.0.0", "model_format": fmt},
            files={"file": (filename, data, "application/octet-stream")},
        )


VOLATILE = ("plughost.db", "logs", "replicas")  # the database, its journal, the server's logs


def _kept(app: InProcessServer) -> set[str]:
    """Every path in the server's home but its database and logs: the archive store, the
    model folders, any spool or scratch folder of the upload."""
    home = app.home
    return {
        str(p.relative_to(home))
        for p in home.rglob("*")
        if not p.relative_to(home).parts[0].startswith(VOLATILE)
    }


def _torch_zip(pickled: bytes) -> bytes:
    """The zip layout of torch.save around ``pickled`` as its data.pkl."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickled)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_a_torch_zip_whose_pickle_runs_code_is_never_unpickled(
    app: InProcessServer, marker: Path
) -> None:
    evil = pickle.dumps(Bomb(marker), protocol=2)
    body = _post(
        app,
        unique_name("pkl_zip"),
        model_tar({"weights.pt": _torch_zip(evil)}),
        "pytorch",
        "m.tar.gz",
    )
    # its container is torch.save's, so it is taken in; its pickle is only ever opened by
    # torch.load(weights_only=True) inside a plugin's sandbox
    assert body.status_code == 200, body.text
    model_id = body.json()["model_id"]
    with app.client() as c:
        assert model_id in [
            m["model_id"] for m in c.get(f"/v1/namespaces/{NS}/models").json()["models"]
        ]
        doc = c.get(f"/v1/namespaces/{NS}/models/{model_id}")
        assert doc.status_code == 200, doc.text
    assert not marker.exists()


@pytest.mark.parametrize(
    ("filename", "wrap", "accepted"),
    [
        pytest.param("weights.bin", lambda p: LEGACY_TORCH_MAGIC + p, True, id="legacy-magic-bin"),
        pytest.param("weights.bin", lambda p: p, False, id="plain-pickle-bin"),
        pytest.param("weights.pt", lambda p: p, False, id="plain-pickle-pt"),
        pytest.param("weights.pkl", lambda p: p, False, id="pkl"),
    ],
)
def test_other_pickle_bombs_are_never_unpickled(
    app: InProcessServer, marker: Path, filename: str, wrap: Any, accepted: bool
) -> None:
    data = wrap(pickle.dumps(Bomb(marker)))
    name = unique_name("pkl")
    resp = _post(app, name, model_tar({filename: data}), "pytorch", "m.tar.gz")
    assert resp.status_code == (200 if accepted else 422), resp.text
    if not accepted:
        assert filename in resp.text or "no *.pt" in resp.text, resp.text
    with app.client() as c:
        c.get(f"/v1/namespaces/{NS}/models")
    assert not marker.exists()


def _st(
    tensors: dict[str, tuple[list[int], list[int]]], data_bytes: int, length: int | None = None
) -> bytes:
    """A safetensors file whose header says what the test wants, true or not."""
    header = {n: {"dtype": "F32", "shape": s, "data_offsets": o} for n, (s, o) in tensors.items()}
    head = json.dumps(header).encode()
    return (
        struct.pack("<Q", length if length is not None else len(head)) + head + b"\0" * data_bytes
    )


LIES = [
    pytest.param(_st({"w": ([4], [0, 16])}, 8), "lie outside", id="offsets-past-the-end"),
    pytest.param(_st({"w": ([4], [-16, 0])}, 16), "lie outside", id="negative-offset"),
    pytest.param(_st({"w": ([4], [16, 0])}, 16), "lie outside", id="end-before-begin"),
    pytest.param(
        _st({"a": ([4], [0, 16]), "b": ([4], [8, 24])}, 24), "overlap", id="overlapping-tensors"
    ),
    pytest.param(_st({"w": ([1000], [0, 16])}, 16), "needs 4000", id="shape-larger-than-data"),
    pytest.param(
        _st({"w": ([4], [0, 16])}, 16, length=10**6), "does not fit", id="header-past-the-file"
    ),
    pytest.param(
        _st({"w": ([4], [0, 16])}, 16, length=2**64 - 8),
        "does not fit",
        id="header-length-negative",
    ),
]


@pytest.mark.parametrize(("data", "reason"), LIES)
def test_safetensors_whose_header_lies_are_refused_and_nothing_is_kept(
    app: InProcessServer, data: bytes, reason: str
) -> None:
    before = _kept(app)
    resp = _post(
        app, unique_name("lying"), model_tar({"model.safetensors": data}), "safetensors", "m.tar.gz"
    )
    assert resp.status_code == 422, resp.text
    message = resp.json()["error"]["message"]
    assert "model.safetensors" in message and reason in message, message
    assert _kept(app) == before


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _lying_sizes(archive: bytes, real: int, claimed: int) -> bytes:
    """``archive`` with every uncompressed size of ``real`` bytes declared as ``claimed``
    (local headers and central directory)."""
    old, new = struct.pack("<I", real), struct.pack("<I", claimed)
    assert archive.count(old) == 2
    return archive.replace(old, new)


def test_an_archive_past_the_limit_is_refused_without_being_stored(app: InProcessServer) -> None:
    before = _kept(app)
    resp = _post(app, unique_name("too_big"), os.urandom(LIMIT + 50_000), "safetensors", "m.tar.gz")
    assert resp.status_code == 413, resp.text
    assert "exceeds the limit" in resp.json()["error"]["message"]
    assert _kept(app) == before


@pytest.mark.parametrize("lie", [False, True], ids=["honest-bomb", "lying-bomb"])
def test_a_zip_bomb_is_stopped_while_unpacking(app: InProcessServer, lie: bool) -> None:
    zeros = safetensors_bytes({"w": [0.0] * (LIMIT // 2)})  # 600 kB of zeros
    archive = _zip({"model.safetensors": zeros})
    assert len(archive) < LIMIT // 50
    if lie:  # the zip declares a tenth of what its member inflates to
        archive = _lying_sizes(archive, len(zeros), len(zeros) // 10)
    before = _kept(app)
    resp = _post(app, unique_name("bomb"), archive, "safetensors", "m.zip")
    assert resp.status_code == 422, resp.text
    message = resp.json()["error"]["message"]
    # honest: its declared size is over the limit; lying: inflating stops at the declared
    # size, so the check of what was written (CRC, size) refuses it, never past the limit
    expected = "corrupt data" if lie else f"above the limit of {LIMIT} bytes"
    assert expected in message, message
    assert _kept(app) == before
