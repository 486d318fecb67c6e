"""Turn an asset URL into a local file: ``file://`` URLs and plughost store URLs.

A plughost store URL is the signed download URL the server hands out,
``http(s)://<host>/v1/_store/archives/<key>?expires=...&signature=...``. It is fetched over
HTTP, which needs the network: a replica in the sandbox has none unless its namespace is
listed in ``PLUGHOST_SANDBOX_EGRESS_NAMESPACES``, so there a ``file://`` URL (of a file the
sandbox can see) is what works. ``s3://`` URLs are refused until plughost stores objects in S3.
Any other URL is refused: plugins that need the open web fetch it themselves.

Downloads land in the temporary directory, which inside the sandbox is a small private tmpfs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

STORE_DOWNLOAD_PREFIX = "/v1/_store/archives/"
"""Path prefix of the plughost store's signed download URLs (api/routes_store.py)."""

HTTP_TIMEOUT_S = 60.0
_CHUNK = 1024 * 1024


class AssetError(ValueError):
    """The URL is not one plughost can turn into a local file, or the file is missing."""


def _local_path(url: str) -> str | None:
    """The path a ``file://`` URL (or a bare absolute path) names; None for other URLs."""
    if url.startswith("/"):
        return url
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    if parts.netloc not in ("", "localhost"):
        raise AssetError(f"file URL names another host: {url}")
    return unquote(parts.path)


def _is_store_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.path.startswith(STORE_DOWNLOAD_PREFIX)


def _fresh_file(suffix: str | None) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix="asset-", suffix=suffix or "")


def download_asset(url: str, suffix: str | None = None) -> str:
    """Copy the asset at ``url`` into a new temporary file; return that file's path.

    The caller owns the file and should delete it. ``suffix`` (such as ``".mp4"``) ends the
    file name, for libraries that go by extension. Raises AssetError for an unsupported URL
    or a missing local file, and urllib's errors when a store download fails.
    """
    source = _local_path(url)
    if source is None and not _is_store_url(url):
        raise _unsupported(url)
    if source is not None and not os.path.isfile(source):
        raise AssetError(f"asset file not found: {source}")
    import shutil

    fd, target = _fresh_file(suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            if source is not None:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, _CHUNK)
            else:
                _fetch(url, out)
    except BaseException:
        os.unlink(target)
        raise
    return target


@contextmanager
def open_asset(url: str, suffix: str | None = None) -> Iterator[str]:
    """Yield a local path holding the asset at ``url``.

    A ``file://`` URL yields its own path (no copy; do not write to it); a store URL is
    downloaded to a temporary file that is deleted when the block ends.
    """
    source = _local_path(url)
    if source is not None:
        if not os.path.isfile(source):
            raise AssetError(f"asset file not found: {source}")
        yield source
        return
    path = download_asset(url, suffix)
    try:
        yield path
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)


def _fetch(url: str, out: BinaryIO) -> None:
    import shutil
    import urllib.request

    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        shutil.copyfileobj(response, out, _CHUNK)


def _unsupported(url: str) -> AssetError:
    scheme = urlsplit(url).scheme or "a bare name"
    if scheme == "s3":
        return AssetError(
            f"s3:// URLs are not supported until plughost stores objects in S3: {url}"
        )
    return AssetError(
        f"cannot open {url!r}: plughost resolves file:// URLs and its own store's download "
        f"URLs (.../v1/_store/archives/...), not {scheme}"
    )
