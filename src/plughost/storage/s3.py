"""Archive store on S3 or an S3-compatible server (MinIO, moto), through boto3.

Clients PUT and GET archives with S3's own presigned URLs, so archive bytes never pass
through plughost on the presigned flow. A direct upload lands in a staging object under
`{prefix}incoming/` (a lifecycle rule on that folder clears abandoned ones); confirm checks
its ETag and size and copies exactly those bytes to the archive's key with a server-side
copy. The server reads an archive only to validate or deploy it, through a local cache keyed
by the object's ETag. boto3 is imported here only, and only when an S3 store is configured
(the `s3` extra).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from plughost.errors import (
    ConflictError,
    StorageUnavailableError,
    ValidationError,
)
from plughost.storage.base import StoredObject
from plughost.storage.spool import spool

log = logging.getLogger("plughost.storage")

STAGING = "incoming/"
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_BLOCK = 1 << 20
_MISSING = {"404", "NoSuchKey", "NotFound"}
_NO_BUCKET = {"NoSuchBucket"}
_REFUSED = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AuthorizationHeaderMalformed",
}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ends with "/"

    def key(self, key: str) -> str:
        return self.prefix + key

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"


def parse_storage_url(url: str) -> S3Location:
    """`s3://bucket/prefix` -> its bucket and key prefix (normalised to end with `/`)."""
    if not url.startswith("s3://"):
        raise ValueError(f"PLUGHOST_STORAGE_URL must be empty or s3://bucket/prefix, not {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise ValueError(f"PLUGHOST_STORAGE_URL {url!r}: {bucket!r} is not an S3 bucket name")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"PLUGHOST_STORAGE_URL {url!r}: the prefix may not hold . or ..")
    return S3Location(bucket, "".join(f"{p}/" for p in parts))


def explain(code: str, where: str) -> str:
    """What an S3 error code means for an operator; `where` names the bucket and endpoint."""
    if code in _NO_BUCKET:
        return f"the bucket of {where} does not exist"
    if code in _REFUSED:
        return f"{where} refused the credentials ({code}); check the AWS settings"
    return f"{where} answered {code or 'an error'}"


def unquote_etag(etag: str) -> str:
    return etag.strip().strip('"').lower()


class S3ArchiveStore:
    """Plugin archives under `s3://bucket/prefix`; `client` is a boto3 S3 client."""

    def __init__(self, location: S3Location, client: Any, cache_dir: Path) -> None:
        self.location = location
        self.client = client
        self.cache_dir = cache_dir.resolve()
        endpoint = getattr(getattr(client, "meta", None), "endpoint_url", "") or "AWS S3"
        self.where = f"{location.url()} at {endpoint}"

    @classmethod
    def open(
        cls, url: str, endpoint_url: str, cache_dir: Path, connect_timeout_s: float
    ) -> S3ArchiveStore:
        """A store on `url` (region and credentials from boto3's usual chain)."""
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise ValueError(
                f"PLUGHOST_STORAGE_URL={url} needs boto3: pip install 'plughost[s3]' ({exc})"
            ) from exc
        config = Config(
            signature_version="s3v4",
            connect_timeout=connect_timeout_s,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            # S3-compatible servers may not know the newer default checksums
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # a custom endpoint (MinIO, moto) names no bucket host of its own
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None, config=config
        )
        return cls(parse_storage_url(url), client, cache_dir)

    # -- errors -------------------------------------------------------------------------------
    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """boto3's errors as StorageUnavailableError (503) naming the bucket and endpoint."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise StorageUnavailableError(
                f"cannot {doing}: {explain(code, self.where)}", self._details(code)
            ) from exc
        except BotoCoreError as exc:  # no credentials, unreachable endpoint, timeouts
            raise StorageUnavailableError(
                f"cannot {doing}: {self.where} cannot be used: {exc}",
                self._details(type(exc).__name__),
            ) from exc

    def _details(self, code: str) -> dict[str, Any]:
        endpoint = getattr(getattr(self.client, "meta", None), "endpoint_url", None)
        return {"store": self.location.url(), "endpoint": endpoint, "code": code}

    @staticmethod
    def _code(exc: Exception) -> str:
        response = getattr(exc, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    def check(self) -> None:
        """Fail fast: the bucket exists and these credentials may read it."""
        with self._translated("use the archive store"):
            try:
                self.client.head_bucket(Bucket=self.location.bucket)
            except Exception as exc:
                if self._code(exc) in _MISSING:  # HEAD has no body: 404 is the bucket
                    raise StorageUnavailableError(
                        f"cannot use the archive store: {explain('NoSuchBucket', self.where)}",
                        self._details("NoSuchBucket"),
                    ) from exc
                raise

    # -- keys ---------------------------------------------------------------------------------
    @staticmethod
    def _checked(key: str) -> PurePosixPath:
        rel = PurePosixPath(key)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValidationError(f"invalid storage key {key!r}")
        return rel

    def _object(self, key: str) -> str:
        return self.location.key(self._checked(key).as_posix())

    def _staging(self, key: str) -> str:
        return self.location.key(STAGING + self._checked(key).as_posix())

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir.joinpath(*self._checked(key).parts)

    def url_for(self, key: str) -> str:
        return f"s3://{self.location.bucket}/{self._object(key)}"

    # -- presigned URLs -----------------------------------------------------------------------
    def presign_put(self, key: str, expires_s: int) -> str | None:
        params = {"Bucket": self.location.bucket, "Key": self._staging(key)}
        with self._translated("sign an upload URL"):
            return str(self.client.generate_presigned_url("put_object", params, expires_s))

    def presign_get(self, key: str, expires_s: int) -> str | None:
        params = {"Bucket": self.location.bucket, "Key": self._object(key)}
        with self._translated("sign a download URL"):
            return str(self.client.generate_presigned_url("get_object", params, expires_s))

    # -- objects ------------------------------------------------------------------------------
    def _head(self, s3_key: str, doing: str) -> StoredObject | None:
        with self._translated(doing):
            try:
                head = self.client.head_object(Bucket=self.location.bucket, Key=s3_key)
            except Exception as exc:
                if self._code(exc) not in _MISSING:
                    raise
                self.check()  # a missing bucket answers 404 too: say which
                return None
        return StoredObject(s3_key, int(head["ContentLength"]), unquote_etag(head["ETag"]))

    def stat(self, key: str) -> StoredObject | None:
        found = self._head(self._object(key), "read the archive's metadata")
        return None if found is None else StoredObject(key, found.size, found.etag)

    def staged(self, key: str) -> StoredObject | None:
        found = self._head(self._staging(key), "read the uploaded archive's metadata")
        return None if found is None else StoredObject(key, found.size, found.etag)

    def commit(self, key: str, etag: str) -> None:
        """Server-side copy of the staged object, only if it still has `etag`."""
        source = {"Bucket": self.location.bucket, "Key": self._staging(key)}
        with self._translated("store the uploaded archive"):
            try:
                self.client.copy_object(
                    Bucket=self.location.bucket,
                    Key=self._object(key),
                    CopySource=source,
                    CopySourceIfMatch=f'"{etag}"',
                )
            except Exception as exc:
                if self._code(exc) != "PreconditionFailed":
                    raise
                raise ConflictError(
                    "the uploaded archive changed while it was confirmed; confirm again"
                ) from exc

    def discard_staged(self, key: str) -> None:
        self._delete_object(self._staging(key))

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> StoredObject:
        """Spool to the cache (the copy validation reads next), then one PUT to S3 whose
        Content-MD5 S3 checks; the object's ETag is then the MD5 of the bytes."""
        target = self._cache_path(key)
        spooled = await spool(chunks, target.parent, max_bytes)
        try:
            await asyncio.to_thread(self._upload, spooled.path, key, spooled.md5, spooled.size)
            os.replace(spooled.path, target)
        except BaseException:
            spooled.path.unlink(missing_ok=True)
            raise
        _etag_file(target).write_text(spooled.etag)
        return StoredObject(key=key, size=spooled.size, etag=spooled.etag)

    def _upload(self, path: Path, key: str, md5: bytes, size: int) -> None:
        with self._translated("store the archive"), path.open("rb") as body:
            self.client.put_object(
                Bucket=self.location.bucket,
                Key=self._object(key),
                Body=body,
                ContentLength=size,
                ContentMD5=base64.b64encode(md5).decode(),
                ContentType="application/octet-stream",
            )

    def local_path(self, key: str) -> Path:
        """The cached copy when it has the object's current ETag, else a fresh download
        (a missing object gives a path that does not exist, as the local store does)."""
        target = self._cache_path(key)
        found = self._head(self._object(key), "read the archive")
        if found is None:
            return target
        marker = _etag_file(target)
        if target.is_file() and marker.is_file() and marker.read_text() == found.etag:
            return target
        self._download(key, found.etag, target)
        return target

    def _download(self, key: str, etag: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            md5 = hashlib.md5(usedforsecurity=False)
            with self._translated("download the archive"), os.fdopen(fd, "wb") as out:
                got = self.client.get_object(
                    Bucket=self.location.bucket, Key=self._object(key), IfMatch=f'"{etag}"'
                )
                for block in got["Body"].iter_chunks(_BLOCK):
                    md5.update(block)
                    out.write(block)
            if _MD5_HEX.match(etag) and md5.hexdigest() != etag:
                raise StorageUnavailableError(
                    f"cannot download the archive: the bytes of {self.url_for(key)} do not "
                    f"match its ETag {etag}",
                    self._details("BadDigest"),
                )
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _etag_file(target).write_text(etag)

    def delete(self, key: str) -> None:
        self._delete_object(self._object(key))
        target = self._cache_path(key)
        target.unlink(missing_ok=True)
        _etag_file(target).unlink(missing_ok=True)

    def _delete_object(self, s3_key: str) -> None:
        """Best effort: the registry's row is what counts; an object left behind is logged
        for the operator rather than failing a delete that already happened."""
        try:
            with self._translated("delete the archive"):
                self.client.delete_object(Bucket=self.location.bucket, Key=s3_key)
        except StorageUnavailableError as exc:
            log.warning("left s3://%s/%s behind: %s", self.location.bucket, s3_key, exc.message)


def _etag_file(path: Path) -> Path:
    return path.with_name(path.name + ".etag")
