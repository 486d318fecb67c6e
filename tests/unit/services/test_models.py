"""The namespace models service over a real SQLite database and local store: upload with
dedupe, list/get, delete (409 while a deployed plugin names the model), organization models
enabled and disabled, and the files laid out again at start."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from model_support import model_tar, onnx_bytes, safetensors_bytes

from plughost.config import Settings
from plughost.domain.scope import PluginScope
from plughost.errors import ConflictError, NotFoundError, ValidationError
from plughost.persistence.db import Database
from plughost.persistence.models import ModelRows
from plughost.persistence.tables import Release
from plughost.services.intake_gate import IntakeGate
from plughost.services.model_files import ModelFiles
from plughost.services.model_upload import ModelForm
from plughost.services.models import NamespaceModels, archive_key_for
from plughost.storage.local import LocalArchiveStore

from .conftest import NS_A, NS_B, OTHER_TENANT, add_plugin

WEIGHTS = model_tar({"model.safetensors": safetensors_bytes()}, "tiny/")


def _service(settings: Settings, db: Database, store: LocalArchiveStore) -> NamespaceModels:
    return NamespaceModels(
        settings, ModelRows(db), store, ModelFiles(settings, store), IntakeGate(1)
    )


def _upload(
    models: NamespaceModels, scope: PluginScope, data: bytes = WEIGHTS, name: str = "tiny",
    version: str = "1.0.0", fmt: str = "safetensors",
) -> dict[str, Any]:
    form = ModelForm(name, version, fmt, task_type="embedding", num_cpus=2.0)

    async def run() -> dict[str, Any]:
        return await models.upload(scope, form, io.BytesIO(data))

    return asyncio.run(run())


@pytest.fixture
def models(settings: Settings, db: Database, store: LocalArchiveStore) -> NamespaceModels:
    return _service(settings, db, store)


def _index(models: NamespaceModels, ns: str) -> dict[str, Any]:
    return json.loads((models.files.namespaces / ns / "index.json").read_text())["models"]


def test_an_upload_is_stored_once_per_content_and_laid_out(
    models: NamespaceModels, store: LocalArchiveStore
) -> None:
    first = _upload(models, NS_A)
    assert first["model_id"] == "tiny_1_0_0"
    assert first["deployment_status"] == "not_deployed"
    second = _upload(models, NS_A, version="1.0.1-rc")
    assert second["model_id"] == "tiny_1_0_1_rc"
    assert first["model_archive_url"] == second["model_archive_url"]
    stored = sorted(p.name for p in (store.root / "models").iterdir())
    assert stored == [archive_key_for(models.rows.every()[0].sha256).split("/")[1]]
    a = models.files.model_dir("ns_a", "tiny_1_0_0") / "model.safetensors"
    b = models.files.model_dir("ns_a", "tiny_1_0_1_rc") / "model.safetensors"
    assert a.stat().st_ino == b.stat().st_ino  # one blob
    assert sorted(_index(models, "ns_a")) == ["tiny_1_0_0", "tiny_1_0_1_rc"]
    assert list(models.files.scratch.iterdir()) == []


def test_the_same_id_twice_is_a_conflict_and_a_bad_archive_registers_nothing(
    models: NamespaceModels,
) -> None:
    _upload(models, NS_A)
    with pytest.raises(ConflictError):
        _upload(models, NS_A)
    with pytest.raises(ValidationError) as caught:
        _upload(models, NS_A, name="wrong", fmt="onnx")
    assert "no *.onnx file" in caught.value.message
    assert [r.model_id for r in models.rows.every()] == ["tiny_1_0_0"]
    # a known content declared as another format is checked too, without unpacking again
    with pytest.raises(ValidationError):
        _upload(models, NS_B, fmt="pytorch")


def test_list_get_and_other_tenants(models: NamespaceModels) -> None:
    _upload(models, NS_A)
    listing = models.listing(NS_A)
    assert listing["total"] == 1 and listing["models"][0]["model_id"] == "tiny_1_0_0"
    doc = models.detail(NS_A, "tiny_1_0_0")["model"]
    assert doc["model_hash"] == models.rows.every()[0].sha256
    assert doc["resource_requirements"] == {"num_cpus": 2, "num_gpus": 0, "memory": 4 * 1024**3}
    assert models.listing(NS_B)["total"] == 0
    with pytest.raises(NotFoundError):
        models.detail(OTHER_TENANT, "tiny_1_0_0")
    assert models.available(OTHER_TENANT)["total"] == 0


def test_delete_is_refused_while_a_deployed_plugin_names_the_model(
    models: NamespaceModels, db: Database
) -> None:
    _upload(models, NS_A)
    plugin = add_plugin(db, NS_A, "user", model_refs=["tiny_1_0_0"])
    with db.session() as s:
        s.add(Release(namespace_id="ns_a", plugin_pk=plugin.id, plugin_id=plugin.plugin_id,
                      name="user", version="1.0.0", status="deployed"))
    with pytest.raises(ConflictError) as caught:
        models.delete(NS_A, "tiny_1_0_0")
    assert caught.value.details == {"model_id": "tiny_1_0_0", "plugins": ["user_1_0_0"]}
    assert "user_1_0_0" in caught.value.message
    with db.session() as s:
        for release in s.query(Release).all():
            release.status = "not_deployed"
    models.delete(NS_A, "tiny_1_0_0")
    assert models.listing(NS_A)["total"] == 0


def test_delete_keeps_the_blob_and_archive_while_another_row_uses_them(
    models: NamespaceModels, store: LocalArchiveStore
) -> None:
    _upload(models, NS_A)
    _upload(models, NS_B, name="same")
    sha = models.rows.every()[0].sha256
    models.delete(NS_A, "tiny_1_0_0")
    assert models.files.has_blob(sha) and store.stat(archive_key_for(sha)) is not None
    assert not models.files.model_dir("ns_a", "tiny_1_0_0").exists()
    assert _index(models, "ns_a") == {}
    models.delete(NS_B, "same_1_0_0")
    assert not models.files.has_blob(sha) and store.stat(archive_key_for(sha)) is None


def test_org_models_enable_disable(models: NamespaceModels) -> None:
    _upload(models, NS_A, data=model_tar({"m.onnx": onnx_bytes()}), name="vision", fmt="onnx")
    available = models.available(NS_B)
    assert available["models"][0]["model_id"] == "vision_1_0_0"
    assert available["models"][0]["enabled_in_namespace"] is False
    done = models.enable(NS_B, "vision_1_0_0", deploy=True, overrides={"num_gpus": 1})
    assert done["deployment_status"] == "deployed"
    assert models.available(NS_B)["models"][0]["enabled_in_namespace"] is True
    row = models.rows.get("org_a", "ns_b", "vision_1_0_0")
    assert row is not None and row.source_namespace_id == "ns_a" and row.num_gpus == 1
    assert row.deployed
    assert "vision_1_0_0" in _index(models, "ns_b")
    with pytest.raises(ConflictError, match="DELETE"):
        models.disable(NS_A, "vision_1_0_0")
    models.disable(NS_B, "vision_1_0_0")
    assert _index(models, "ns_b") == {}
    assert models.files.has_blob(row.sha256)  # the upload in ns_a keeps it
    with pytest.raises(NotFoundError):
        models.enable(OTHER_TENANT, "vision_1_0_0", deploy=False)


def test_restore_lays_the_files_out_again(
    settings: Settings, db: Database, store: LocalArchiveStore, models: NamespaceModels
) -> None:
    _upload(models, NS_A)
    sha = models.rows.every()[0].sha256
    models.files.drop_blob(sha)
    models.files.unlink("ns_a", "tiny_1_0_0")
    (models.files.namespaces / "ns_a" / "index.json").unlink()
    stray = models.files.namespaces / "ns_gone" / "old_1_0_0"
    stray.mkdir(parents=True)
    fresh = _service(settings, db, store)
    fresh.restore()
    assert (fresh.files.model_dir("ns_a", "tiny_1_0_0") / "model.safetensors").is_file()
    assert "tiny_1_0_0" in _index(fresh, "ns_a")
    assert not stray.exists() and _index(fresh, "ns_gone") == {}


def test_too_large_an_upload_is_413(db: Database, store: LocalArchiveStore, tmp_path: Path) -> None:
    from plughost.errors import PayloadTooLargeError

    small = Settings(home=tmp_path / "h", model_max_bytes=100)
    with pytest.raises(PayloadTooLargeError):
        _upload(_service(small, db, store), NS_A)


def test_prepare_lays_out_what_another_server_registered(
    settings: Settings, db: Database, store: LocalArchiveStore, tmp_path: Path
) -> None:
    other = _service(Settings(home=tmp_path / "other-home"), db, store)
    _upload(other, NS_A)  # registered by a server with its own files
    here = _service(settings, db, store)
    assert here.files.read_index("ns_a") == {}
    folder = here.prepare("ns_a")
    assert folder == here.files.namespaces / "ns_a"
    assert (folder / "tiny_1_0_0" / "model.safetensors").is_file()
    assert "tiny_1_0_0" in _index(here, "ns_a")
    assert json.loads((here.prepare("ns_b") / "index.json").read_text()) == {"models": {}}
