"""ModelFiles: blobs unpacked once and read-only, namespace folders of hard links (one inode
for every namespace), the index replaced whole, and blobs fetched again from the store."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

from model_support import model_tar, safetensors_bytes

from plughost.config import Settings
from plughost.services.model_files import IndexEntry, ModelFiles
from plughost.storage.local import LocalArchiveStore

SHA = "ab" * 32


def _files(settings: Settings, store: LocalArchiveStore) -> ModelFiles:
    return ModelFiles(settings, store)


def _blob(files: ModelFiles, data: bytes = b"") -> Path:
    unpacked = files.scratch / "u"
    (unpacked / "sub").mkdir(parents=True)
    (unpacked / "model.safetensors").write_bytes(data or safetensors_bytes())
    (unpacked / "sub" / "config.json").write_text("{}")
    return files.install_blob(SHA, unpacked)


def _entry(model_id: str) -> IndexEntry:
    return IndexEntry(model_id, "m", "1.0.0", "safetensors", SHA, None, "embedding")


def test_a_blob_is_read_only_and_namespaces_share_its_inodes(
    settings: Settings, store: LocalArchiveStore
) -> None:
    files = _files(settings, store)
    blob = _blob(files)
    assert stat.S_IMODE((blob / "model.safetensors").stat().st_mode) == 0o444
    assert stat.S_IMODE(blob.stat().st_mode) == 0o555
    a = files.link("ns_a", "m_1_0_0", SHA)
    b = files.link("ns_b", "other_2_0_0", SHA)
    inode = (blob / "model.safetensors").stat().st_ino
    assert (a / "model.safetensors").stat().st_ino == inode
    assert (b / "model.safetensors").stat().st_ino == inode
    assert (a / "sub" / "config.json").stat().st_ino == (blob / "sub" / "config.json").stat().st_ino
    assert (blob / "model.safetensors").stat().st_nlink == 3
    assert stat.S_IMODE(a.stat().st_mode) == 0o555
    # a second link of the same model keeps the folder
    assert files.link("ns_a", "m_1_0_0", SHA) == a


def test_install_of_a_known_content_keeps_the_first_blob(
    settings: Settings, store: LocalArchiveStore
) -> None:
    files = _files(settings, store)
    first = _blob(files)
    inode = (first / "model.safetensors").stat().st_ino
    again = files.scratch / "again"
    again.mkdir()
    (again / "model.safetensors").write_bytes(b"other")
    assert files.install_blob(SHA, again) == first
    assert (first / "model.safetensors").stat().st_ino == inode
    assert not again.exists()


def test_the_index_is_replaced_whole_and_paths_are_relative(
    settings: Settings, store: LocalArchiveStore
) -> None:
    files = _files(settings, store)
    folder = files.namespace_dir("ns_a")
    assert json.loads((folder / "index.json").read_text()) == {"models": {}}
    before = (folder / "index.json").stat().st_ino
    files.write_index("ns_a", [_entry("m_1_0_0")])
    index = folder / "index.json"
    assert index.stat().st_ino != before  # a new file renamed over the old one
    body = json.loads(index.read_text())
    assert body["models"]["m_1_0_0"] == {
        "name": "m", "version": "1.0.0", "model_format": "safetensors", "sha256": SHA,
        "framework": None, "task_type": "embedding", "path": "m_1_0_0",
    }
    assert sorted(p.name for p in folder.iterdir()) == ["index.json"]  # no temp file left
    assert files.read_index("ns_a") == body["models"]


def test_prune_and_unlink_remove_read_only_folders_but_keep_the_blob(
    settings: Settings, store: LocalArchiveStore
) -> None:
    files = _files(settings, store)
    blob = _blob(files)
    files.link("ns_a", "keep_1_0_0", SHA)
    files.link("ns_a", "gone_1_0_0", SHA)
    files.prune("ns_a", {"keep_1_0_0"})
    assert not files.model_dir("ns_a", "gone_1_0_0").exists()
    assert files.model_dir("ns_a", "keep_1_0_0").is_dir()
    files.unlink("ns_a", "keep_1_0_0")
    assert not files.model_dir("ns_a", "keep_1_0_0").exists()
    assert (blob / "model.safetensors").is_file()
    files.drop_blob(SHA)
    assert not blob.exists()


def test_a_missing_blob_is_unpacked_again_from_the_store(
    settings: Settings, store: LocalArchiveStore
) -> None:
    files = _files(settings, store)
    data = model_tar({"model.safetensors": safetensors_bytes()}, "top/")

    async def chunks():  # type: ignore[no-untyped-def]
        yield data

    asyncio.run(store.put_stream("models/x.tar.gz", chunks(), 1 << 20))
    blob = files.ensure_blob(SHA, "models/x.tar.gz")
    assert (blob / "model.safetensors").read_bytes() == safetensors_bytes()
    assert os.listdir(files.scratch) == []


def test_preload_reads_every_byte(settings: Settings, store: LocalArchiveStore) -> None:
    files = _files(settings, store)
    _blob(files, b"x" * 3_000_000)
    files.link("ns_a", "m_1_0_0", SHA)
    assert files.preload("ns_a", "m_1_0_0") == 3_000_002
