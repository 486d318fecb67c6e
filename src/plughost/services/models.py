"""Namespace models: upload, list, get, delete, deploy (preload), the organization's models
and their enable/disable in a namespace (the SDK's ``CustomModelsApi``).

A namespace's models are its rows in ``namespace_models``; the files plugin processes read
are kept in step by :class:`ModelFiles` after every change. An organization model is any
model uploaded to one of the organization's namespaces; enabling it in another namespace
adds a row there that points at the same archive and blob (no copy).

"Used by a deployed plugin" is what the plugin's code names as constants
(:mod:`plughost.archive.model_refs`, recorded at intake); an id the code computes at run
time is not seen, so deleting that model is not refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

from plughost.config import Settings
from plughost.domain.ids import model_id_for
from plughost.domain.scope import PluginScope
from plughost.errors import ConflictError, NotFoundError
from plughost.persistence.models import ModelRow, ModelRows, new_row
from plughost.services.intake_gate import IntakeGate
from plughost.services.model_files import IndexEntry, ModelFiles
from plughost.services.model_upload import (
    ModelForm,
    Received,
    check_form,
    check_resources,
    receive,
    take_in,
)
from plughost.services.model_views import detail_body, list_item
from plughost.storage.base import ArchiveStore

log = logging.getLogger("plughost.models")

_BLOCK = 1 << 20


def archive_key_for(sha256: str) -> str:
    """The store key of a model archive: one object per content."""
    return f"models/{sha256}.tar.gz"


class NamespaceModels:
    """The use cases of namespace models; the async ones run on the event loop."""

    def __init__(
        self,
        settings: Settings,
        rows: ModelRows,
        store: ArchiveStore,
        files: ModelFiles,
        gate: IntakeGate,
    ) -> None:
        self.settings = settings
        self.rows = rows
        self.store = store
        self.files = files
        self.gate = gate

    # -- upload --------------------------------------------------------------------------
    async def upload(self, scope: PluginScope, form: ModelForm, source: BinaryIO) -> dict[str, Any]:
        """Take in one archive (``source``: the spooled file part) and register it."""
        form = check_form(form)
        ns = _namespace(scope)
        model_id = model_id_for(form.name, form.version)
        await asyncio.to_thread(self._check_absent, scope, model_id)
        limit = self.settings.model_max_bytes
        received = await self.gate.run(self._receive, source, form.model_format, limit)
        try:
            key = archive_key_for(received.sha256)
            if await asyncio.to_thread(self.store.stat, key) is None:  # stored once per content
                await self.store.put_stream(key, _chunks(received), limit)
            row = new_row(
                organization_id=scope.organization_id,
                namespace_id=ns,
                model_id=model_id,
                name=form.name,
                version=form.version,
                model_format=form.model_format,
                framework=form.framework,
                task_type=form.task_type,
                num_cpus=form.num_cpus,
                num_gpus=form.num_gpus,
                memory_gb=form.memory_gb,
                sha256=received.sha256,
                size_bytes=received.unpacked_bytes,
                archive_key=key,
                source_namespace_id=None,
            )
            await asyncio.to_thread(self._register, row)
        finally:
            received.discard()
        return {
            "success": True,
            "model_id": model_id,
            "deployment_status": "not_deployed",
            "endpoint": _endpoint(ns, model_id),
            "model_archive_url": self.store.url_for(key),
        }

    def _receive(self, source: BinaryIO, model_format: str, limit: int) -> Received:
        received = receive(self.files, source, limit)
        try:
            take_in(self.files, received, model_format, limit)
        except BaseException:
            received.discard()
            raise
        return received

    def _check_absent(self, scope: PluginScope, model_id: str) -> None:
        if self.rows.get(scope.organization_id, _namespace(scope), model_id) is not None:
            raise ConflictError(
                f"model {model_id} already exists in this namespace; delete it or upload a "
                "new version",
                {"model_id": model_id},
            )

    def _register(self, row: ModelRow) -> None:
        self.rows.add(row)
        self.sync(row.organization_id, row.namespace_id)

    # -- queries -------------------------------------------------------------------------
    def listing(self, scope: PluginScope) -> dict[str, Any]:
        ns = _namespace(scope)
        rows = self.rows.in_namespace(scope.organization_id, ns)
        return {
            "success": True,
            "models": [list_item(row) for row in rows],
            "total": len(rows),
            "namespace_id": ns,
        }

    def detail(self, scope: PluginScope, model_id: str) -> dict[str, Any]:
        row = self._row(scope, model_id)
        return {"success": True, "model": detail_body(row, self.store.url_for(row.archive_key))}

    def _row(self, scope: PluginScope, model_id: str) -> ModelRow:
        row = self.rows.get(scope.organization_id, _namespace(scope), model_id)
        if row is None:
            raise NotFoundError(f"model {model_id!r} not found in namespace {scope.namespace_id}")
        return row

    # -- delete, deploy ------------------------------------------------------------------
    def delete(self, scope: PluginScope, model_id: str) -> dict[str, Any]:
        row = self._row(scope, model_id)
        self._refuse_if_used(row)
        self._remove(row)
        return {
            "success": True,
            "model_id": model_id,
            "message": f"model {model_id} deleted from namespace {row.namespace_id}",
        }

    def _refuse_if_used(self, row: ModelRow) -> None:
        users = self.rows.deployed_users(row.namespace_id, row.model_id)
        if users:
            raise ConflictError(
                f"model {row.model_id} is used by deployed plugin(s) {', '.join(users)}: "
                "undeploy them first",
                {"model_id": row.model_id, "plugins": users},
            )

    def _remove(self, row: ModelRow) -> None:
        self.rows.remove(row.namespace_id, row.model_id)
        self.sync(row.organization_id, row.namespace_id)
        if not self.rows.sha_in_use(row.sha256):  # the last row of this content
            self.files.drop_blob(row.sha256)
            self.store.delete(row.archive_key)

    def deploy(self, scope: PluginScope, model_id: str) -> dict[str, Any]:
        """Preload: the files in place on this machine and read once into the page cache,
        so the next replica maps them at once."""
        row = self._row(scope, model_id)
        self.files.ensure_blob(row.sha256, row.archive_key)
        self.files.link(row.namespace_id, row.model_id, row.sha256)
        read = self.files.preload(row.namespace_id, row.model_id)
        self.rows.set_deployed(row.namespace_id, row.model_id)
        return {
            "success": True,
            "model_id": model_id,
            "namespace_id": row.namespace_id,
            "deployment_status": "deployed",
            "cached": True,
            "message": f"model {model_id} preloaded ({read} bytes in the page cache)",
        }

    # -- organization models -------------------------------------------------------------
    def available(self, scope: PluginScope) -> dict[str, Any]:
        ns = _namespace(scope)
        here = {row.model_id for row in self.rows.in_namespace(scope.organization_id, ns)}
        seen: dict[str, ModelRow] = {}
        for row in self.rows.uploaded_in_org(scope.organization_id):
            seen.setdefault(row.model_id, row)  # the first upload of an id stands for it
        models = [
            {
                "model_id": row.model_id,
                "name": row.name,
                "version": row.version,
                "model_format": row.model_format,
                "description": f"uploaded to namespace {row.namespace_id}",
                "framework": row.framework,
                "task_type": row.task_type,
                "enabled_in_namespace": row.model_id in here,
            }
            for row in seen.values()
        ]
        return {"success": True, "models": models, "total": len(models), "namespace_id": ns}

    def enable(
        self,
        scope: PluginScope,
        model_id: str,
        deploy: bool,
        overrides: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        ns = _namespace(scope)
        answer = {"success": True, "model_id": model_id, "namespace_id": ns}
        if self.rows.get(scope.organization_id, ns, model_id) is not None:
            status = self.deploy(scope, model_id)["deployment_status"] if deploy else "skipped"
            return {**answer, "deployment_status": status, "message": "already in this namespace"}
        origin = next(
            (r for r in self.rows.uploaded_in_org(scope.organization_id) if r.model_id == model_id),
            None,
        )
        if origin is None:
            raise NotFoundError(f"no model {model_id!r} was uploaded to this organization")
        resources = _resources(origin, overrides or {})
        row = new_row(
            organization_id=scope.organization_id,
            namespace_id=ns,
            model_id=model_id,
            name=origin.name,
            version=origin.version,
            model_format=origin.model_format,
            framework=origin.framework,
            task_type=origin.task_type,
            sha256=origin.sha256,
            size_bytes=origin.size_bytes,
            archive_key=origin.archive_key,
            source_namespace_id=origin.namespace_id,
            **resources,
        )
        self.rows.add(row)
        self.sync(scope.organization_id, ns)
        status = self.deploy(scope, model_id)["deployment_status"] if deploy else "skipped"
        return {
            **answer,
            "deployment_status": status,
            "message": f"model {model_id} of namespace {origin.namespace_id} enabled in {ns}",
        }

    def disable(self, scope: PluginScope, model_id: str) -> dict[str, Any]:
        row = self._row(scope, model_id)
        if row.uploaded_here:
            raise ConflictError(
                f"model {model_id} was uploaded to this namespace, not enabled from the "
                f"organization: delete it (DELETE /v1/namespaces/{row.namespace_id}/models/"
                f"{model_id})",
                {"model_id": model_id},
            )
        self._refuse_if_used(row)
        self._remove(row)
        return {
            "success": True,
            "model_id": model_id,
            "namespace_id": row.namespace_id,
            "message": f"model {model_id} disabled in namespace {row.namespace_id}",
        }

    # -- the files -----------------------------------------------------------------------
    def sync(self, organization_id: str, namespace_id: str) -> None:
        """The namespace's folder as its rows say: every model linked, index rewritten,
        folders of removed models gone."""
        rows = self.rows.in_namespace(organization_id, namespace_id)
        self._sync_rows(namespace_id, rows)

    def _sync_rows(self, namespace_id: str, rows: list[ModelRow]) -> None:
        for row in rows:
            self.files.ensure_blob(row.sha256, row.archive_key)
            self.files.link(namespace_id, row.model_id, row.sha256)
        self.files.write_index(namespace_id, [_entry(row) for row in rows])
        self.files.prune(namespace_id, {row.model_id for row in rows})

    def prepare(self, namespace_id: str) -> Path:
        """The namespace's folder, in step with its rows, before a plugin process of the
        namespace starts (a model another server registered is laid out here too)."""
        rows = self.rows.of_namespace(namespace_id)
        if {row.model_id for row in rows} != set(self.files.read_index(namespace_id)):
            self._sync_rows(namespace_id, rows)
        return self.files.namespace_dir(namespace_id)

    def restore(self) -> None:
        """At server start: every namespace's folder made whole again (files missing on this
        machine fetched from the store) and deployed models read into the page cache again;
        a model that cannot be is logged, not fatal."""
        by_ns: dict[str, list[ModelRow]] = {}
        for row in self.rows.every():
            by_ns.setdefault(row.namespace_id, []).append(row)
        for ns in self.files.known_namespaces():
            by_ns.setdefault(ns, [])
        for ns, rows in by_ns.items():
            try:
                self._sync_rows(ns, rows)
                for row in rows:
                    if row.deployed:
                        self.files.preload(ns, row.model_id)
            except (OSError, ValueError) as exc:
                log.error("namespace %s: cannot lay out its models' files: %s", ns, exc)


def _namespace(scope: PluginScope) -> str:
    if scope.namespace_id is None:
        raise NotFoundError("models live in a namespace")
    return scope.namespace_id


def _endpoint(namespace_id: str, model_id: str) -> str:
    """Models are loaded by plugins, not called: the model's own resource stands in."""
    return f"/v1/namespaces/{namespace_id}/models/{model_id}"


def _entry(row: ModelRow) -> IndexEntry:
    return IndexEntry(
        model_id=row.model_id,
        name=row.name,
        version=row.version,
        model_format=row.model_format,
        sha256=row.sha256,
        framework=row.framework,
        task_type=row.task_type,
    )


def _resources(origin: ModelRow, overrides: dict[str, Any]) -> dict[str, Any]:
    num_cpus = overrides.get("num_cpus", origin.num_cpus)
    num_gpus = overrides.get("num_gpus", origin.num_gpus)
    memory = overrides.get("memory")
    memory_gb = memory / 1024**3 if memory is not None else origin.memory_gb
    check_resources(num_cpus, num_gpus, memory_gb)
    return {"num_cpus": num_cpus, "num_gpus": num_gpus, "memory_gb": memory_gb}


async def _chunks(received: Received) -> AsyncIterator[bytes]:
    with received.archive.open("rb") as src:
        while block := src.read(_BLOCK):
            yield block
