"""Batch use cases: submit (uploaded file or stored object), presigned input upload, read,
list and cancel. The jobs themselves run in :class:`~plughost.batch.scheduler.BatchScheduler`.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plughost.batch.bell import JobBell
from plughost.batch.formats import InputFormatError, sniff_file
from plughost.config import Settings
from plughost.domain.batch_states import BATCH_ACTIVE, ON_ERROR_MODES, BatchStatus
from plughost.domain.ids import new_id
from plughost.domain.scope import PluginScope
from plughost.errors import ConflictError, NotFoundError, ValidationError
from plughost.persistence.batches import Batches, BatchView, NewBatch
from plughost.persistence.db import Database
from plughost.services.plugins import find_plugin
from plughost.storage.base import ArchiveStore
from plughost.storage.signing import UrlSigner
from plughost.timeutil import iso

INPUT_PUT_PATH = "/v1/_store/{key}"
OUTPUT_GET_PATH = "/v1/_store/archives/{key}"
INPUT_URL_PREFIX = "store://batch-inputs/"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# what create_input_upload hands out after the prefix: its id, then the cleaned file name
_INPUT_REST = re.compile(r"bin_[0-9a-f]{24}/[A-Za-z0-9._-]{1,120}")


@dataclass(frozen=True)
class Submission:
    parameters: dict[str, Any]
    on_error: str


def check_submission(parameters: Any, on_error: Any) -> Submission:
    """The form's ``parameters`` (a JSON object) and ``on_error`` (fail | skip), checked."""
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise ValidationError("parameters must be a JSON object")
    mode = on_error or "fail"
    if mode not in ON_ERROR_MODES:
        raise ValidationError(f"on_error must be one of {', '.join(ON_ERROR_MODES)}, not {mode!r}")
    return Submission(parameters, mode)


def safe_file_name(name: str | None) -> str:
    base = Path(name or "input").name
    return _SAFE_NAME.sub("_", base)[-120:] or "input"


class BatchService:
    """API-facing batch use cases; ``bell`` tells the scheduler a job was queued or
    cancelled."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        store: ArchiveStore,
        signer: UrlSigner,
        bell: JobBell | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.signer = signer
        self.batches = Batches(db)
        self.bell = bell if bell is not None else JobBell()
        self.live: dict[str, Any] = {}  # batch id -> Counters of running jobs
        # the namespace's max_batch_jobs quota, raising 429 (plughost.services.policies)
        self.quota: Callable[[str | None], None] = lambda _namespace_id: None

    # -- submit ---------------------------------------------------------------------------
    def _plugin(self, scope: PluginScope, plugin_id: str) -> tuple[int, str]:
        self.quota(scope.namespace_id)  # before the input is stored
        with self.db.session() as s:
            plugin = find_plugin(s, scope, plugin_id)
            if plugin.validation_status != "passed":
                raise ConflictError(f"plugin {plugin_id!r} did not pass validation")
            return plugin.id, plugin.plugin_id

    async def submit_stream(
        self,
        scope: PluginScope,
        plugin_id: str,
        file_name: str | None,
        chunks: AsyncIterator[bytes],
        submission: Submission,
    ) -> dict[str, Any]:
        """Store an uploaded input, check its format and queue the job."""
        pk, pid = self._plugin(scope, plugin_id)
        batch_id = new_id("bat")
        key = f"batches/{scope.organization_id}/{scope.namespace_id}/{batch_id}/input-{safe_file_name(file_name)}"
        await self.store.put_stream(key, chunks, self.settings.batch_max_input_bytes)
        try:
            fmt = sniff_file(self.store.local_path(key), file_name)
        except InputFormatError:
            self.store.delete(key)
            raise
        return self._queue(scope, batch_id, pk, pid, key, fmt, file_name, True, submission)

    def submit_url(
        self, scope: PluginScope, plugin_id: str, input_url: str, submission: Submission
    ) -> dict[str, Any]:
        """Queue a job over an object a presigned batch upload put in the store."""
        pk, pid = self._plugin(scope, plugin_id)
        if not input_url.startswith(INPUT_URL_PREFIX):
            raise ValidationError(
                f"input_url must be a {INPUT_URL_PREFIX}... URL from POST "
                f"/v1/namespaces/{scope.namespace_id}/batches/uploads"
            )
        rest = input_url.removeprefix(INPUT_URL_PREFIX)
        key = f"batch-inputs/{scope.organization_id}/{scope.namespace_id}/{rest}"
        # only a URL of the shape this server issues can name an upload: anything else (a
        # path out of the folder, a name longer than the file system takes) is looked up
        # nowhere
        if (
            not _INPUT_REST.fullmatch(rest)
            or rest.split("/")[1] in (".", "..")
            or not self.store.local_path(key).is_file()
        ):
            raise NotFoundError(f"no uploaded input at {input_url}")
        name = rest.rsplit("/", 1)[-1]
        fmt = sniff_file(self.store.local_path(key), name)
        batch_id = new_id("bat")
        return self._queue(scope, batch_id, pk, pid, key, fmt, name, False, submission)

    def _queue(
        self,
        scope: PluginScope,
        batch_id: str,
        pk: int,
        plugin_id: str,
        key: str,
        fmt: str,
        name: str | None,
        owned: bool,
        submission: Submission,
    ) -> dict[str, Any]:
        assert scope.namespace_id is not None
        view = self.batches.create(
            NewBatch(
                id=batch_id,
                organization_id=scope.organization_id,
                namespace_id=scope.namespace_id,
                plugin_pk=pk,
                plugin_id=plugin_id,
                input_key=key,
                input_format=fmt,
                input_name=name,
                input_owned=owned,
                parameters=submission.parameters,
                on_error=submission.on_error,
            )
        )
        self.bell.queued()
        return {
            "success": True,
            "batch_id": view.id,
            "plugin_id": view.plugin_id,
            "status": view.status.value,
            "input_format": fmt,
            "status_endpoint": status_endpoint(view),
        }

    # -- presigned input upload -------------------------------------------------------------
    def create_input_upload(
        self, scope: PluginScope, file_name: str | None, expiration_s: int, base_url: str
    ) -> dict[str, Any]:
        if not 60 <= expiration_s <= 86400:
            raise ValidationError("presigned_url_expiration must be between 60 and 86400 seconds")
        rest = f"{new_id('bin')}/{safe_file_name(file_name)}"
        key = f"batch-inputs/{scope.organization_id}/{scope.namespace_id}/{rest}"
        expires = int(time.time()) + expiration_s
        resource = INPUT_PUT_PATH.format(key=key)
        signature = self.signer.signature("PUT", resource, expires)
        return {
            "success": True,
            "input_url": INPUT_URL_PREFIX + rest,
            "presigned_url": f"{base_url.rstrip('/')}{resource}?expires={expires}&signature={signature}",
            "method": "PUT",
            "expires_in_seconds": expiration_s,
            "max_bytes": self.settings.batch_max_input_bytes,
        }

    async def receive_input(
        self, key: str, expires: str | None, signature: str | None, chunks: AsyncIterator[bytes]
    ) -> str:
        self.signer.verify("PUT", INPUT_PUT_PATH.format(key=key), expires, signature)
        if not key.startswith("batch-inputs/"):
            raise NotFoundError("not a batch input")
        stored = await self.store.put_stream(key, chunks, self.settings.batch_max_input_bytes)
        return f'"{stored.etag}"'

    # -- read ---------------------------------------------------------------------------------
    def _job(self, scope: PluginScope, plugin_id: str | None, batch_id: str) -> BatchView:
        view = self.batches.get(batch_id)
        if (
            view is None
            or view.organization_id != scope.organization_id
            or view.namespace_id != scope.namespace_id
            or (plugin_id is not None and view.plugin_id != plugin_id)
        ):
            raise NotFoundError(f"batch {batch_id!r} not found")
        return view

    def get(
        self, scope: PluginScope, plugin_id: str | None, batch_id: str, base_url: str
    ) -> dict[str, Any]:
        return self.document(self._job(scope, plugin_id, batch_id), base_url)

    def list(self, scope: PluginScope, plugin_id: str | None, base_url: str) -> dict[str, Any]:
        assert scope.namespace_id is not None
        views = [
            v
            for v in self.batches.in_namespace(scope.namespace_id, plugin_id)
            if v.organization_id == scope.organization_id
        ]
        items = [self.document(v, base_url) for v in views]
        return {"success": True, "batches": items, "total": len(items)}

    def cancel(self, scope: PluginScope, plugin_id: str | None, batch_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (its workers are stopped, no output is kept)."""
        view = self._job(scope, plugin_id, batch_id)
        while view.status in BATCH_ACTIVE:
            if self.batches.move(
                view.id, view.status, BatchStatus.CANCELLED, "cancelled by request"
            ):
                self.bell.cancelled(view.id)
                break
            view = self._job(scope, plugin_id, batch_id)
        else:
            raise ConflictError(
                f"batch {batch_id!r} is already {view.status.value}", {"status": view.status.value}
            )
        return {"success": True, "batch_id": view.id, "status": BatchStatus.CANCELLED.value}

    def document(self, view: BatchView, base_url: str) -> dict[str, Any]:
        """The wire shape of one job."""
        live = self.live.get(view.id) if view.status is BatchStatus.RUNNING else None
        done = live.rows_done if live else view.rows_done
        failed = live.rows_failed if live else view.rows_failed
        errors = list(live.errors) if live else view.errors
        total = (live.rows_total if live else None) or view.rows_total
        rate = live.rows_per_second() if live else _final_rate(view)
        eta = None
        if view.status is BatchStatus.COMPLETED:
            eta = 0
        elif rate and total is not None:
            eta = max(0, round((total - done) / rate))
        doc: dict[str, Any] = {
            "batch_id": view.id,
            "plugin_id": view.plugin_id,
            "namespace_id": view.namespace_id,
            "status": view.status.value,
            "on_error": view.on_error,
            "input_format": view.input_format,
            "input_name": view.input_name,
            "parameters": view.parameters,
            "rows_total": total,
            "rows_done": done,
            "rows_failed": failed,
            "rows_per_second": round(rate, 2) if rate else None,
            "estimated_completion_seconds": eta,
            "errors": errors,
            "message": view.message,
            "created_at": iso(view.created_at),
            "started_at": iso(view.started_at),
            "finished_at": iso(view.finished_at),
            "updated_at": iso(view.updated_at),
            "status_endpoint": status_endpoint(view),
            "output_url": None,
        }
        if view.status is BatchStatus.COMPLETED and view.output_key:
            doc["output_url"] = self.output_url(view.output_key, base_url)
        return doc

    def output_url(self, key: str, base_url: str, valid_s: int = 3600) -> str:
        expires = int(time.time()) + valid_s
        resource = OUTPUT_GET_PATH.format(key=key)
        signature = self.signer.signature("GET", resource, expires)
        return f"{base_url.rstrip('/')}{resource}?expires={expires}&signature={signature}"


def status_endpoint(view: BatchView) -> str:
    return f"/v1/namespaces/{view.namespace_id}/plugins/{view.plugin_id}/batches/{view.id}"


def _final_rate(view: BatchView) -> float | None:
    if view.started_at and view.finished_at and view.rows_done:
        elapsed = (view.finished_at - view.started_at).total_seconds()
        return view.rows_done / elapsed if elapsed > 0 else None
    return None
