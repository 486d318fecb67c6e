"""Uploads: the presigned flow (create, PUT, confirm), the multipart flow and registration,
over a real database, the real intake, a local store and a fake direct-upload store."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from plughost.config import Settings
from plughost.domain.scope import PluginScope
from plughost.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from plughost.persistence.db import Database
from plughost.persistence.tables import Plugin, Upload
from plughost.services.plugins import NoDeployments, Plugins
from plughost.services.uploads import Uploads
from plughost.storage.local import LocalArchiveStore
from plughost.storage.signing import UrlSigner
from plughost.storage.staging import staging_key
from plughost.timeutil import utcnow

from .conftest import NS_A, NS_B, ORG_LEVEL, OTHER_TENANT, add_plugin, plugin_zip
from .fakes import DirectStore, stream

BASE = "http://plughost.test"
BAD_REQUESTS = [
    *[("name", v) for v in ("ab", "1embed", "../../etc", "embed\n", "x" * 65, "embed-x")],
    *[("version", v) for v in ("1.0.0.0", "latest", "1.0\n", "-1", "1.")],
    ("description", "d" * 501),
    *[("file_size_bytes", v) for v in (-1, 64 * 1024 + 1)],
    *[("expiration_s", v) for v in (59, 86401)],
]
BAD_CODE = {"processors/core.py": "import subprocess\nsubprocess.asyncio.run(['sh'])\n"}


@pytest.fixture
def signer() -> UrlSigner:
    return UrlSigner(b"s" * 32)


@pytest.fixture
def failed_validations() -> list[str]:
    return []


@pytest.fixture
def uploads(
    settings: Settings,
    db: Database,
    store: LocalArchiveStore,
    signer: UrlSigner,
    failed_validations: list[str],
) -> Uploads:
    return Uploads(settings, db, store, signer, on_validation_failed=failed_validations.append)


@pytest.fixture
def direct(tmp_path: Path) -> DirectStore:
    return DirectStore(tmp_path / "bucket")


@pytest.fixture
def direct_uploads(
    settings: Settings, db: Database, direct: DirectStore, signer: UrlSigner
) -> Uploads:
    return Uploads(settings, db, direct, signer)


def create(uploads: Uploads, scope: PluginScope = NS_A, **fields: Any) -> dict[str, Any]:
    """A presigned upload of embed 1.0.0 into ``scope``, ``fields`` changed."""
    request: dict[str, Any] = {"name": "embed", "version": "1.0.0", "description": None}
    request.update({"file_size_bytes": None, "expiration_s": 600, **fields})
    return uploads.create_upload(scope, base_url=BASE, **request)


def put(uploads: Uploads, created: dict[str, Any], data: bytes) -> str:
    """PUT ``data`` to the created upload's presigned URL, as a client does."""
    query = parse_qs(urlsplit(created["presigned_url"]).query)
    signed = (created["upload_id"], query["expires"][0], query["signature"][0])
    return asyncio.run(uploads.receive_archive(*signed, stream(data)))


def upload_status(db: Database, upload_id: str) -> str:
    with db.session() as s:
        row = s.get(Upload, upload_id)
        assert row is not None
        return row.status


def plugin_count(db: Database) -> int:
    with db.session() as s:
        return s.query(Plugin).count()


# -- create_upload ----------------------------------------------------------------------------
def test_a_created_upload_is_keyed_by_tenant_and_signed_for_the_servers_put_route(
    uploads: Uploads, signer: UrlSigner
) -> None:
    created = create(uploads, name="embed", version="v2")
    assert created["version"] == "2.0.0" and created["namespace_id"] == "ns_a"
    key = created["s3_key"]
    assert key.startswith("plugins/org_a/ns_a/embed/2.0.0/upl_") and key.endswith(".archive")
    url = urlsplit(created["presigned_url"])
    assert url.path == f"/v1/_store/uploads/{created['upload_id']}"
    query = parse_qs(url.query)
    signer.verify("PUT", url.path, query["expires"][0], query["signature"][0])


def test_an_organization_upload_is_kept_apart_from_namespaces(uploads: Uploads) -> None:
    created = create(uploads, ORG_LEVEL)
    assert created["s3_key"].startswith("plugins/org_a/_org/embed/1.0.0/")
    assert created["organization_id"] == "org_a" and "namespace_id" not in created


@pytest.mark.parametrize(("field", "value"), BAD_REQUESTS)
def test_bad_upload_requests_are_refused_before_anything_is_kept(
    uploads: Uploads, db: Database, field: str, value: Any
) -> None:
    with pytest.raises(ValidationError) as err:
        create(uploads, **{field: value})
    assert err.value.error_type == "ValidationError" and err.value.status_code == 422
    with db.session() as s:
        assert s.query(Upload).count() == 0


def test_an_existing_version_cannot_be_uploaded_again_in_the_same_scope(
    uploads: Uploads, db: Database
) -> None:
    add_plugin(db, NS_A, "embed")
    with pytest.raises(ConflictError) as err:
        create(uploads, version="1")
    assert err.value.details == {"plugin_id": "embed_1_0_0"}
    create(uploads, NS_B)  # another namespace has its own names
    create(uploads, OTHER_TENANT)


# -- receive_archive ---------------------------------------------------------------------------
def test_the_put_stores_the_archive_and_answers_its_md5_etag(
    uploads: Uploads, db: Database, store: LocalArchiveStore
) -> None:
    created = create(uploads)
    data = plugin_zip()
    assert put(uploads, created, data) == f'"{hashlib.md5(data).hexdigest()}"'
    # staged: only confirm's checked copy writes the archive's key
    assert store.local_path(staging_key(created["s3_key"])).read_bytes() == data
    assert not store.local_path(created["s3_key"]).exists()
    assert upload_status(db, created["upload_id"]) == "uploaded"


@pytest.mark.parametrize(
    ("expires", "signature"),
    [(None, None), ("soon", "x"), ("99999999999", "0" * 64), ("1", None)],
)
def test_a_put_without_a_valid_signature_is_forbidden(
    uploads: Uploads, store: LocalArchiveStore, expires: str | None, signature: str | None
) -> None:
    created = create(uploads)
    with pytest.raises(ForbiddenError):
        asyncio.run(uploads.receive_archive(created["upload_id"], expires, signature, stream(b"x")))
    assert not store.local_path(created["s3_key"]).exists()


def test_a_signature_for_one_upload_does_not_open_another(uploads: Uploads) -> None:
    first, second = create(uploads), create(uploads, name="other")
    query = parse_qs(urlsplit(first["presigned_url"]).query)
    with pytest.raises(ForbiddenError, match="does not match"):
        asyncio.run(
            uploads.receive_archive(
                second["upload_id"], query["expires"][0], query["signature"][0], stream(b"x")
            )
        )


def test_an_expired_url_is_forbidden(uploads: Uploads, signer: UrlSigner) -> None:
    created = create(uploads)
    resource = f"/v1/_store/uploads/{created['upload_id']}"
    with pytest.raises(ForbiddenError, match="expired"):
        asyncio.run(
            uploads.receive_archive(
                created["upload_id"], "1", signer.signature("PUT", resource, 1), stream(b"x")
            )
        )


def test_a_signed_put_for_an_unknown_upload_is_not_found(
    uploads: Uploads, signer: UrlSigner
) -> None:
    expires = 99999999999
    sig = signer.signature("PUT", "/v1/_store/uploads/upl_ghost", expires)
    with pytest.raises(NotFoundError):
        asyncio.run(uploads.receive_archive("upl_ghost", str(expires), sig, stream(b"x")))


def test_an_oversize_put_is_refused_and_nothing_is_kept(
    uploads: Uploads, db: Database, store: LocalArchiveStore
) -> None:
    created = create(uploads)
    with pytest.raises(PayloadTooLargeError) as err:
        put(uploads, created, b"\0" * (64 * 1024 + 1))
    assert err.value.details == {"max_bytes": 64 * 1024}
    assert not store.local_path(created["s3_key"]).exists()
    assert upload_status(db, created["upload_id"]) == "pending"


# -- confirm -----------------------------------------------------------------------------------
def test_a_confirmed_upload_is_registered_and_cannot_be_confirmed_or_put_again(
    uploads: Uploads, db: Database, store: LocalArchiveStore
) -> None:
    created = create(uploads, description="mine")
    data = plugin_zip()
    etag = put(uploads, created, data)
    body = asyncio.run(uploads.confirm(NS_A, created["upload_id"], etag, len(data)))
    assert body["success"] is True and body["validation_status"] == "passed"
    assert body["plugin_id"] == "embed_1_0_0" and body["upload_id"] == created["upload_id"]
    assert body["s3_archive_url"] == store.url_for(created["s3_key"])
    assert upload_status(db, created["upload_id"]) == "completed"
    doc = Plugins(db, store, NoDeployments()).get(NS_A, "embed_1_0_0")["plugin"]
    assert doc["description"] == "mine" and doc["security_scan_passed"] is True
    with pytest.raises(ConflictError, match="already confirmed"):
        asyncio.run(uploads.confirm(NS_A, created["upload_id"], None, None))
    with pytest.raises(ConflictError, match="already confirmed"):
        put(uploads, created, b"replacement")
    assert store.local_path(created["s3_key"]).read_bytes() == data


def test_the_manifest_description_is_used_when_the_upload_has_none(
    uploads: Uploads, db: Database, store: LocalArchiveStore
) -> None:
    created = create(uploads)
    put(uploads, created, plugin_zip())
    asyncio.run(uploads.confirm(NS_A, created["upload_id"], None, None))
    doc = Plugins(db, store, NoDeployments()).get(NS_A, "embed_1_0_0")["plugin"]
    assert doc["description"] == "from the manifest"


@pytest.mark.parametrize("scope", [NS_B, ORG_LEVEL, OTHER_TENANT, PluginScope("org_b", "ns_a")])
def test_another_scope_cannot_confirm_an_upload(
    uploads: Uploads, db: Database, scope: PluginScope
) -> None:
    created = create(uploads)
    put(uploads, created, plugin_zip())
    with pytest.raises(NotFoundError, match="not found"):
        asyncio.run(uploads.confirm(scope, created["upload_id"], None, None))
    assert plugin_count(db) == 0 and upload_status(db, created["upload_id"]) == "uploaded"


def test_confirm_without_an_archive_says_to_put_it_first(uploads: Uploads) -> None:
    created = create(uploads)
    with pytest.raises(NotFoundError, match="PUT it to the presigned URL first") as err:
        asyncio.run(uploads.confirm(NS_A, created["upload_id"], None, None))
    assert "expired" not in err.value.message
    with pytest.raises(NotFoundError):
        asyncio.run(uploads.confirm(NS_A, "upl_ghost", None, None))


def test_confirm_without_an_archive_after_expiry_says_the_url_expired(
    uploads: Uploads, db: Database
) -> None:
    created = create(uploads)
    with db.session() as s:
        row = s.get(Upload, created["upload_id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    with pytest.raises(NotFoundError, match="the upload URL has expired"):
        asyncio.run(uploads.confirm(NS_A, created["upload_id"], None, None))


@pytest.mark.parametrize(
    ("etag", "size", "match"),
    [('"' + "0" * 32 + '"', None, "etag mismatch"), (None, 1, "file_size_bytes mismatch")],
)
def test_a_confirm_that_names_other_bytes_is_refused_and_can_be_retried(
    uploads: Uploads, db: Database, etag: str | None, size: int | None, match: str
) -> None:
    created = create(uploads)
    data = plugin_zip()
    good = put(uploads, created, data)
    with pytest.raises(ValidationError, match=match) as err:
        asyncio.run(uploads.confirm(NS_A, created["upload_id"], etag, size))
    assert err.value.details is not None and set(err.value.details) == {"expected", "actual"}
    assert plugin_count(db) == 0
    # the etag is compared without quotes and case
    body = asyncio.run(uploads.confirm(NS_A, created["upload_id"], good.upper(), len(data)))
    assert body["success"] is True


def test_an_archive_that_fails_validation_is_dropped_and_the_upload_stays_open(
    uploads: Uploads, db: Database, store: LocalArchiveStore, failed_validations: list[str]
) -> None:
    created = create(uploads)
    put(uploads, created, plugin_zip(overrides=BAD_CODE))
    body = asyncio.run(uploads.confirm(NS_A, created["upload_id"], None, None))
    assert body["success"] is False and body["validation_status"] == "failed"
    assert any("subprocess" in e for e in body["validation_errors"])
    assert body["message"].endswith("nothing was registered")
    assert failed_validations == ["ns_a"]
    assert plugin_count(db) == 0 and not store.local_path(created["s3_key"]).exists()
    assert upload_status(db, created["upload_id"]) == "pending"
    put(uploads, created, plugin_zip())  # a fixed archive to the same URL
    assert asyncio.run(uploads.confirm(NS_A, created["upload_id"], None, None))["success"] is True


def test_a_direct_upload_is_checked_then_committed_and_its_staging_dropped(
    direct_uploads: Uploads, direct: DirectStore, db: Database
) -> None:
    created = create(direct_uploads)
    assert created["presigned_url"].startswith("https://bucket.test/plugins/org_a/ns_a/")
    data = plugin_zip()
    direct.client_put(created["s3_key"], data)
    etag = hashlib.md5(data).hexdigest()
    body = asyncio.run(direct_uploads.confirm(NS_A, created["upload_id"], f'"{etag}"', len(data)))
    assert body["success"] is True
    assert direct.committed == [(created["s3_key"], etag)]
    assert direct.discarded == [created["s3_key"]]


def test_an_oversize_direct_upload_is_refused_at_confirm_and_discarded(
    direct_uploads: Uploads, direct: DirectStore, db: Database
) -> None:
    created = create(direct_uploads)
    direct.client_put(created["s3_key"], b"\0" * (64 * 1024 + 1))  # S3 does not bound it
    with pytest.raises(PayloadTooLargeError):
        asyncio.run(direct_uploads.confirm(NS_A, created["upload_id"], None, None))
    assert direct.committed == [] and direct.discarded == [created["s3_key"]]
    assert plugin_count(db) == 0


def test_a_version_registered_meanwhile_makes_confirm_a_conflict_and_drops_the_archive(
    uploads: Uploads, db: Database, store: LocalArchiveStore
) -> None:
    created = create(uploads)
    put(uploads, created, plugin_zip())
    add_plugin(db, NS_A, "embed")  # a multipart upload of the same version won the race
    with pytest.raises(ConflictError):
        asyncio.run(uploads.confirm(NS_A, created["upload_id"], None, None))
    assert not store.local_path(created["s3_key"]).exists()


# -- multipart ---------------------------------------------------------------------------------
def test_a_multipart_upload_registers_the_plugin_in_one_call(
    uploads: Uploads, db: Database, store: LocalArchiveStore
) -> None:
    body = asyncio.run(
        uploads.upload_multipart(ORG_LEVEL, "embed", "1.2", None, stream(plugin_zip()))
    )
    assert body["success"] is True and body["plugin_id"] == "embed_1_2_0"
    assert body["feature_uri"] == "mixpeek://embed@1.2.0"
    assert body["deployment_status"] == "not_deployed"
    assert Plugins(db, store, NoDeployments()).list(ORG_LEVEL)["total"] == 1


def test_a_multipart_upload_of_an_existing_version_is_a_conflict_before_any_bytes_are_read(
    uploads: Uploads, db: Database
) -> None:
    add_plugin(db, NS_A, "embed")
    read: list[bytes] = []

    async def watched() -> AsyncIterator[bytes]:
        read.append(b"x")
        yield plugin_zip()

    with pytest.raises(ConflictError):
        asyncio.run(uploads.upload_multipart(NS_A, "embed", "1.0.0", None, watched()))
    assert read == []


def test_an_oversize_multipart_upload_keeps_nothing(
    uploads: Uploads, db: Database, store: LocalArchiveStore
) -> None:
    with pytest.raises(PayloadTooLargeError):
        asyncio.run(uploads.upload_multipart(NS_A, "embed", "1", None, stream(b"\0" * (70 * 1024))))
    assert [p for p in store.root.rglob("*") if p.is_file()] == []
    assert plugin_count(db) == 0


def test_a_failed_multipart_validation_is_counted_against_the_organization_level(
    uploads: Uploads, db: Database, failed_validations: list[str]
) -> None:
    body = asyncio.run(
        uploads.upload_multipart(
            ORG_LEVEL, "embed", "1", None, stream(plugin_zip(overrides=BAD_CODE))
        )
    )
    assert body["success"] is False and failed_validations == [""]
    assert plugin_count(db) == 0


def test_an_archive_that_is_not_an_archive_fails_validation(uploads: Uploads) -> None:
    body = asyncio.run(uploads.upload_multipart(NS_A, "embed", "1", None, stream(b"not a zip")))
    assert body["success"] is False and body["validation_errors"]
