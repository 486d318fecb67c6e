"""The S3 archive store's own logic against an in-memory S3 client (no server): URL parsing,
error messages, staging and commit, the ETag-keyed cache, limits, and the split between
plugin archives and batch files."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("botocore")
from botocore.exceptions import ClientError, EndpointConnectionError

from plughost.errors import (
    ConflictError,
    PayloadTooLargeError,
    StorageUnavailableError,
)
from plughost.storage.factory import SplitStore
from plughost.storage.local import LocalArchiveStore
from plughost.storage.s3 import S3ArchiveStore, explain, parse_storage_url

KEY = "plugins/org/ns/name/1.0.0/upl_1.archive"


def _error(code: str, op: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, op)


class Body:
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def iter_chunks(self, size: int) -> Any:
        return iter(lambda: self._data.read(size), b"")


class FakeS3:
    """The calls the store makes, on a dict; knobs: `bucket_exists`, `down`, `gets`."""

    class meta:
        endpoint_url = "http://s3.test"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.bucket_exists = True
        self.down = False
        self.gets = 0

    def _check(self, op: str) -> None:
        if self.down:
            raise EndpointConnectionError(endpoint_url="http://s3.test")
        if not self.bucket_exists:
            raise _error("NoSuchBucket" if op != "HeadObject" else "404", op)

    @staticmethod
    def etag(data: bytes) -> str:
        return '"' + hashlib.md5(data).hexdigest() + '"'

    def head_bucket(self, Bucket: str) -> None:
        self._check("HeadBucket")

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self._check("HeadObject")
        if Key not in self.objects:
            raise _error("404", "HeadObject")
        data = self.objects[Key]
        return {"ContentLength": len(data), "ETag": self.etag(data)}

    def get_object(self, Bucket: str, Key: str, IfMatch: str) -> dict[str, Any]:
        self._check("GetObject")
        self.gets += 1
        data = self.objects[Key]
        if self.etag(data) != IfMatch:
            raise _error("PreconditionFailed", "GetObject")
        return {"Body": Body(data)}

    def put_object(self, Bucket: str, Key: str, Body: Any, **kw: Any) -> None:
        self._check("PutObject")
        data = Body.read()
        assert base64.b64decode(kw["ContentMD5"]) == hashlib.md5(data).digest()
        self.objects[Key] = data

    def copy_object(
        self, Bucket: str, Key: str, CopySource: dict[str, str], CopySourceIfMatch: str
    ) -> None:
        self._check("CopyObject")
        data = self.objects[CopySource["Key"]]
        if self.etag(data) != CopySourceIfMatch:
            raise _error("PreconditionFailed", "CopyObject")
        self.objects[Key] = data

    def delete_object(self, Bucket: str, Key: str) -> None:
        self._check("DeleteObject")
        self.objects.pop(Key, None)

    def generate_presigned_url(self, op: str, params: dict[str, str], expires: int) -> str:
        return f"http://s3.test/{params['Bucket']}/{params['Key']}?op={op}&expires={expires}"


@pytest.fixture
def fake() -> FakeS3:
    return FakeS3()


@pytest.fixture
def store(fake: FakeS3, tmp_path: Path) -> S3ArchiveStore:
    return S3ArchiveStore(parse_storage_url("s3://bucket/pre/fix"), fake, tmp_path / "cache")


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_storage_urls_give_bucket_and_a_normalised_prefix() -> None:
    assert parse_storage_url("s3://my-bucket").prefix == ""
    loc = parse_storage_url("s3://my-bucket//a/b/")
    assert (loc.bucket, loc.prefix, loc.url("k")) == ("my-bucket", "a/b/", "s3://my-bucket/a/b/k")
    for bad in ("gs://bucket/x", "s3://B", "s3://bucket/../x", "/data/archives"):
        with pytest.raises(ValueError, match="PLUGHOST_STORAGE_URL"):
            parse_storage_url(bad)


def test_error_codes_are_explained_for_an_operator() -> None:
    where = "s3://b/ at http://x"
    assert explain("NoSuchBucket", where) == "the bucket of s3://b/ at http://x does not exist"
    assert "refused the credentials (InvalidAccessKeyId)" in explain("InvalidAccessKeyId", where)
    assert "refused the credentials (403)" in explain("403", where)
    assert explain("SlowDown", where) == "s3://b/ at http://x answered SlowDown"


def test_check_names_a_missing_bucket_and_an_unreachable_endpoint(
    store: S3ArchiveStore, fake: FakeS3
) -> None:
    store.check()
    fake.bucket_exists = False
    with pytest.raises(
        StorageUnavailableError,
        match="bucket of s3://bucket/pre/fix/ at http://s3.test does not exist",
    ):
        store.check()
    fake.bucket_exists, fake.down = True, True
    with pytest.raises(StorageUnavailableError, match="at http://s3.test cannot be used") as info:
        store.stat(KEY)
    assert info.value.status_code == 503 and info.value.headers == {"Retry-After": "5"}


def test_a_missing_object_is_none_but_a_missing_bucket_is_an_error(
    store: S3ArchiveStore, fake: FakeS3
) -> None:
    assert store.stat(KEY) is None and store.staged(KEY) is None
    fake.bucket_exists = False
    with pytest.raises(StorageUnavailableError, match="does not exist"):
        store.stat(KEY)


def test_presigned_put_targets_staging_and_commit_copies_only_the_checked_bytes(
    store: S3ArchiveStore, fake: FakeS3
) -> None:
    put = store.presign_put(KEY, 600)
    assert put is not None and f"/bucket/pre/fix/incoming/{KEY}?op=put_object" in put
    get = store.presign_get(KEY, 60)
    assert get is not None and f"/bucket/pre/fix/{KEY}?op=get_object" in get
    fake.objects[f"pre/fix/incoming/{KEY}"] = b"v1"
    staged = store.staged(KEY)
    assert staged is not None and staged.size == 2
    fake.objects[f"pre/fix/incoming/{KEY}"] = b"v2"  # a PUT between the check and the copy
    with pytest.raises(ConflictError):
        store.commit(KEY, staged.etag)
    assert store.stat(KEY) is None
    store.commit(KEY, hashlib.md5(b"v2").hexdigest())
    store.discard_staged(KEY)
    assert fake.objects == {f"pre/fix/{KEY}": b"v2"}
    assert store.url_for(KEY) == f"s3://bucket/pre/fix/{KEY}"


def test_local_path_downloads_once_and_again_when_the_object_changes(
    store: S3ArchiveStore, fake: FakeS3
) -> None:
    assert not store.local_path(KEY).exists()
    fake.objects[f"pre/fix/{KEY}"] = b"first"
    path = store.local_path(KEY)
    assert path.read_bytes() == b"first" and store.local_path(KEY) == path and fake.gets == 1
    fake.objects[f"pre/fix/{KEY}"] = b"second"
    assert store.local_path(KEY).read_bytes() == b"second" and fake.gets == 2
    store.delete(KEY)
    assert not path.exists() and not fake.objects


def test_put_stream_uploads_with_md5_and_keeps_nothing_past_the_limit(
    store: S3ArchiveStore, fake: FakeS3, tmp_path: Path
) -> None:
    stored = asyncio.run(store.put_stream(KEY, _chunks(b"ab", b"cd"), 10))
    assert (stored.size, stored.etag) == (4, hashlib.md5(b"abcd").hexdigest())
    assert fake.objects[f"pre/fix/{KEY}"] == b"abcd"
    assert store.local_path(KEY).read_bytes() == b"abcd" and fake.gets == 0  # spooled copy
    with pytest.raises(PayloadTooLargeError):
        asyncio.run(store.put_stream("plugins/other.archive", _chunks(b"x" * 8, b"x" * 8), 10))
    assert set(fake.objects) == {f"pre/fix/{KEY}"}
    assert not list((tmp_path / "cache").rglob(".part-*"))


def test_an_outage_during_put_keeps_no_partial_copy(
    store: S3ArchiveStore, fake: FakeS3, tmp_path: Path
) -> None:
    fake.down = True
    with pytest.raises(StorageUnavailableError, match="cannot store the archive"):
        asyncio.run(store.put_stream(KEY, _chunks(b"abc"), 10))
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    store.delete(KEY)  # best effort: logged, not raised


def test_split_store_keeps_batch_files_local(
    store: S3ArchiveStore, fake: FakeS3, tmp_path: Path
) -> None:
    split = SplitStore(store, LocalArchiveStore(tmp_path / "local"))
    asyncio.run(split.put_stream("batches/o/n/b1/input-x.csv", _chunks(b"a,b\n"), 100))
    asyncio.run(split.put_stream(KEY, _chunks(b"zip"), 100))
    assert list(fake.objects) == [f"pre/fix/{KEY}"]
    assert split.local_path("batches/o/n/b1/input-x.csv").read_bytes() == b"a,b\n"
    assert split.presign_put("batch-inputs/o/n/x.csv", 60) is None
    assert split.url_for(KEY).startswith("s3://bucket/")
