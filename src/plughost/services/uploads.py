"""Upload use cases: presigned upload, archive PUT, confirm, multipart upload, validation.

The async methods are called on the event loop: their database sessions run in worker
threads, and intake (confirm, multipart) through :class:`IntakeGate`, the bound on intakes.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from plughost.archive import IntakeLimits, IntakeResult, validate_archive
from plughost.config import Settings
from plughost.domain.ids import (
    feature_uri_for,
    new_id,
    normalize_version,
    plugin_id_for,
    validate_name,
)
from plughost.domain.scope import PluginScope
from plughost.errors import ConflictError, NotFoundError, PayloadTooLargeError, ValidationError
from plughost.persistence.db import Database
from plughost.persistence.tables import Plugin, Upload
from plughost.services.intake_gate import IntakeGate
from plughost.storage.base import ArchiveStore
from plughost.storage.signing import UrlSigner
from plughost.storage.staging import staging_key
from plughost.timeutil import as_utc, iso, utcnow

UPLOAD_PUT_PATH = "/v1/_store/uploads/{upload_id}"
MAX_DESCRIPTION = 500


def storage_key_for(scope: PluginScope, name: str, version: str, upload_id: str) -> str:
    folder = scope.namespace_id or "_org"
    return f"plugins/{scope.organization_id}/{folder}/{name}/{version}/{upload_id}.archive"


def _check_description(description: str | None) -> None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise ValidationError(f"description is longer than {MAX_DESCRIPTION} characters")


class Uploads:
    """Upload and validation use cases."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        store: ArchiveStore,
        signer: UrlSigner,
        gate: IntakeGate | None = None,
        *,
        manifest_command: Callable[[Path, Path], list[str]] | None = None,
        skip_scan: bool = False,
        on_validation_failed: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.gate = gate or IntakeGate(settings.intake_slots)
        self.db = db
        self.store = store
        self.signer = signer
        self.limits = IntakeLimits(
            max_archive_bytes=settings.max_archive_bytes,
            max_entries=settings.max_archive_entries,
            manifest_timeout_s=settings.manifest_timeout_s,
            manifest_command=manifest_command,
            skip_scan=skip_scan,
        )
        # told the namespace ("" at organization level) of each failed validation (metrics)
        self.on_validation_failed = on_validation_failed

    # -- presigned flow ----------------------------------------------------------------------
    def create_upload(
        self,
        scope: PluginScope,
        name: str,
        version: str,
        description: str | None,
        file_size_bytes: int | None,
        expiration_s: int,
        base_url: str,
    ) -> dict[str, Any]:
        validate_name(name)
        version = normalize_version(version)
        _check_description(description)
        if (
            file_size_bytes is not None
            and not 0 <= file_size_bytes <= self.settings.max_archive_bytes
        ):
            raise ValidationError(
                f"file_size_bytes must be between 0 and {self.settings.max_archive_bytes}"
            )
        if not 60 <= expiration_s <= 86400:
            raise ValidationError("presigned_url_expiration must be between 60 and 86400 seconds")
        upload_id = new_id("upl")
        key = storage_key_for(scope, name, version, upload_id)
        expires_at = utcnow() + timedelta(seconds=expiration_s)
        with self.db.session() as s:
            self._ensure_unique(s, scope, name, version)
            s.add(
                Upload(
                    id=upload_id,
                    organization_id=scope.organization_id,
                    scope=scope.key,
                    name=name,
                    version=version,
                    description=description,
                    storage_key=key,
                    expected_size=file_size_bytes,
                    status="pending",
                    expires_at=expires_at,
                )
            )
        direct = self.store.presign_put(key, expiration_s)  # S3: bytes go straight there
        return {
            "upload_id": upload_id,
            "presigned_url": direct
            or self.presigned_put_url(base_url, upload_id, int(expires_at.timestamp())),
            "s3_key": key,
            "expires_at": iso(expires_at),
            **scope.fields(),
            "name": name,
            "version": version,
        }

    def presigned_put_url(self, base_url: str, upload_id: str, expires: int) -> str:
        resource = UPLOAD_PUT_PATH.format(upload_id=upload_id)
        sig = self.signer.signature("PUT", resource, expires)
        return f"{base_url.rstrip('/')}{resource}?expires={expires}&signature={sig}"

    async def receive_archive(
        self,
        upload_id: str,
        expires: str | None,
        signature: str | None,
        chunks: AsyncIterator[bytes],
    ) -> str:
        """Store the PUT body of a presigned upload in the key's staging file (never the
        key: only confirm's checked copy writes it); returns the quoted MD5 ETag. A PUT that
        ends after its upload was confirmed is refused and its bytes dropped."""
        self.signer.verify("PUT", UPLOAD_PUT_PATH.format(upload_id=upload_id), expires, signature)
        key = await asyncio.to_thread(self._open_upload_key, upload_id)
        limit = self.settings.max_archive_bytes
        stored = await self.store.put_stream(staging_key(key), chunks, limit)
        await asyncio.to_thread(self._mark_uploaded, upload_id, key, stored.size, stored.etag)
        return f'"{stored.etag}"'

    def _open_upload_key(self, upload_id: str) -> str:
        with self.db.session() as s:
            upload = s.get(Upload, upload_id)
            if upload is None:
                raise NotFoundError(f"upload {upload_id!r} not found")
            if upload.status == "completed":
                raise ConflictError(f"upload {upload_id!r} was already confirmed")
            return upload.storage_key

    def _mark_uploaded(self, upload_id: str, key: str, size: int, etag: str) -> None:
        with self.db.session() as s:
            upload = s.get(Upload, upload_id)
            completed = upload is not None and upload.status == "completed"
            if upload is not None and not completed:
                upload.status, upload.size_bytes, upload.etag = "uploaded", size, etag
        if completed:  # confirmed while these bytes streamed in: they are never used
            self.store.discard_staged(key)
            raise ConflictError(f"upload {upload_id!r} was already confirmed")

    async def confirm(
        self, scope: PluginScope, upload_id: str, etag: str | None, file_size_bytes: int | None
    ) -> dict[str, Any]:
        """Check the uploaded archive and take it in: the whole of it (the store's checksum
        read included) in a worker thread, through the intake gate."""
        return await self.gate.run(self._confirm, scope, upload_id, etag, file_size_bytes)

    def _confirm(
        self, scope: PluginScope, upload_id: str, etag: str | None, file_size_bytes: int | None
    ) -> dict[str, Any]:
        with self.db.session() as s:
            upload = s.get(Upload, upload_id)
            if (
                upload is None
                or upload.organization_id != scope.organization_id
                or upload.scope != scope.key
            ):
                raise NotFoundError(f"upload {upload_id!r} not found")
            if upload.status == "completed":
                raise ConflictError(f"upload {upload_id!r} was already confirmed")
            name, version, description, key = (
                upload.name,
                upload.version,
                upload.description,
                upload.storage_key,
            )
            expired = as_utc(upload.expires_at) < utcnow()
        stored = self.store.staged(key)
        if stored is None:
            detail = " and the upload URL has expired" if expired else ""
            raise NotFoundError(
                f"no archive was uploaded for {upload_id!r}{detail}: PUT it to the presigned URL first"
            )
        self._check_integrity(stored.etag, stored.size, etag, file_size_bytes)
        self._check_limit(key, stored.size)
        # the checked bytes become the archive; the staged object stays until the outcome is
        # known, so a store outage (503) in between loses nothing and confirm can be retried
        self.store.commit(key, stored.etag)
        result = self._validate_and_register(scope, name, version, description, key, upload_id)
        self.store.discard_staged(key)
        with self.db.session() as s:
            upload = s.get(Upload, upload_id)
            if upload is not None:
                upload.status = "completed" if result["success"] else "pending"
                # what was checked and copied: the record of the bytes registered
                upload.size_bytes, upload.etag = stored.size, stored.etag
        return {"upload_id": upload_id, **result}

    @staticmethod
    def _check_integrity(
        actual_etag: str, actual_size: int, etag: str | None, size: int | None
    ) -> None:
        if etag is not None and etag.strip().strip('"').lower() != actual_etag:
            raise ValidationError(
                f'etag mismatch: the stored archive has ETag "{actual_etag}", not {etag}',
                {"expected": etag, "actual": f'"{actual_etag}"'},
            )
        if size is not None and size != actual_size:
            raise ValidationError(
                f"file_size_bytes mismatch: the stored archive has {actual_size} bytes, not {size}",
                {"expected": size, "actual": actual_size},
            )

    def _check_limit(self, key: str, size: int) -> None:
        """A direct upload (S3) is not bounded while it streams: refuse it here."""
        limit = self.settings.max_archive_bytes
        if size > limit:
            self.store.discard_staged(key)
            raise PayloadTooLargeError(
                f"archive exceeds the limit of {limit} bytes", {"max_bytes": limit}
            )

    # -- multipart flow -------------------------------------------------------------------
    async def upload_multipart(
        self,
        scope: PluginScope,
        name: str,
        version: str,
        description: str | None,
        chunks: AsyncIterator[bytes],
    ) -> dict[str, Any]:
        validate_name(name)
        version = normalize_version(version)
        _check_description(description)
        await asyncio.to_thread(self._check_unique, scope, name, version)
        upload_id = new_id("upl")
        key = storage_key_for(scope, name, version, upload_id)
        await self.store.put_stream(key, chunks, self.settings.max_archive_bytes)
        return await self.gate.run(
            self._validate_and_register, scope, name, version, description, key, upload_id
        )

    # -- validation + registration ----------------------------------------------------------
    def _check_unique(self, scope: PluginScope, name: str, version: str) -> None:
        with self.db.session() as s:
            self._ensure_unique(s, scope, name, version)

    def _ensure_unique(self, s: Any, scope: PluginScope, name: str, version: str) -> None:
        exists = s.scalars(
            select(Plugin.id).where(
                Plugin.organization_id == scope.organization_id,
                Plugin.scope == scope.key,
                Plugin.name == name,
                Plugin.version == version,
            )
        ).first()
        if exists is not None:
            raise ConflictError(
                f"plugin {name}@{version} already exists; delete it or upload a new version",
                {"plugin_id": plugin_id_for(name, version)},
            )

    def _delete_unless_registered(self, key: str) -> None:
        """Drop an archive nothing registered: a confirm replayed alongside the one that
        registered this key loses the race, and must not delete the winner's archive."""
        with self.db.session() as s:
            used = s.scalars(select(Plugin.id).where(Plugin.storage_key == key)).first()
        if used is None:
            self.store.delete(key)

    def run_intake(self, archive: Path) -> IntakeResult:
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="intake-", dir=self.settings.work_dir))
        try:
            return validate_archive(archive, workdir, self.limits)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _validate_and_register(
        self,
        scope: PluginScope,
        name: str,
        version: str,
        description: str | None,
        key: str,
        upload_id: str,
    ) -> dict[str, Any]:
        pid = plugin_id_for(name, version)
        started = time.monotonic()
        result = self.run_intake(self.store.local_path(key))
        base: dict[str, Any] = {
            "plugin_id": pid,
            "feature_uri": feature_uri_for(name, version),
            "deployment_status": "not_deployed",
        }
        if not result.passed:
            self._delete_unless_registered(key)
            if self.on_validation_failed is not None:
                self.on_validation_failed(scope.namespace_id or "")
            return {
                **base,
                "success": False,
                "validation_status": "failed",
                "validation_errors": result.errors,
                "s3_archive_url": "",
                "message": f"validation failed with {len(result.errors)} error(s); nothing was registered",
            }
        manifest = result.manifest or {}
        try:
            with self.db.session() as s:
                self._ensure_unique(s, scope, name, version)
                s.add(
                    Plugin(
                        plugin_id=pid,
                        organization_id=scope.organization_id,
                        scope=scope.key,
                        name=name,
                        version=version,
                        description=description
                        if description is not None
                        else manifest.get("description"),
                        storage_key=key,
                        archive_url=self.store.url_for(key),
                        code_hash=result.code_hash or "",
                        validation_status="passed",
                        validation_errors=[],
                        security_scan_passed=result.security_scan_passed,
                        has_realtime=result.has_realtime,
                        manifest=manifest,
                        model_refs=result.model_refs,
                    )
                )
        except (ConflictError, IntegrityError) as exc:
            self._delete_unless_registered(key)
            if isinstance(exc, ConflictError):
                raise
            raise ConflictError(f"plugin {name}@{version} already exists") from exc
        took = time.monotonic() - started
        return {
            **base,
            "success": True,
            "validation_status": "passed",
            "validation_errors": [],
            "s3_archive_url": self.store.url_for(key),
            "message": f"plugin {pid} registered (validated in {took:.2f}s)",
        }
