"""Turn an asset URL into a local file, as Mixpeek's ``open_asset`` / ``download_asset`` do.

URLs understood:

- ``file://`` URLs (host empty or ``localhost``) and bare absolute paths: the file itself;
- ``data:`` URIs (``data:image/png;base64,...``), which plughost's batch rows carry for binary
  input values: decoded into a temporary file;
- ``http(s)://`` URLs, plughost's own signed store URLs among them: downloaded. That needs the
  network, which a sandboxed plugin has only when its namespace is listed in
  ``PLUGHOST_SANDBOX_EGRESS_NAMESPACES`` or has an egress allowlist (``PLUGHOST_EGRESS_ALLOW``:
  then through the server's egress proxy, which ``HTTPS_PROXY``/``HTTP_PROXY`` name and
  urllib honours); without it, or for a host the allowlist refuses, the download fails with
  an AssetError saying so.

``s3://`` URLs and other schemes are refused with an AssetError (a ValueError). Temporary
files land in the temporary directory, which inside the sandbox is a small private tmpfs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import BinaryIO, NamedTuple
from urllib.parse import unquote, unquote_to_bytes, urlsplit

STORE_DOWNLOAD_PREFIX = "/v1/_store/archives/"
"""Path prefix of the plughost store's signed download URLs (api/routes_store.py)."""

HTTP_TIMEOUT_S = 60.0
_CHUNK = 1024 * 1024
_EGRESS_HINT = (
    "a sandboxed plugin has no network unless its namespace is listed in "
    "PLUGHOST_SANDBOX_EGRESS_NAMESPACES or has an egress allowlist"
)
_REFUSED_HEADER = "X-Plughost-Egress"


class AssetError(ValueError):
    """The URL is not one plughost can turn into a local file, or the file is missing."""


class AssetFile(NamedTuple):
    """``(path, is_temp)`` as Mixpeek's ``download_asset`` returns it.

    It is also path-like (``os.fspath`` and ``str`` give ``path``), so code written for
    plughost's earlier ``download_asset``, which returned the path alone, keeps working with
    ``open``, ``os.unlink``, ``pathlib.Path`` and the like.
    """

    path: str
    is_temp: bool

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path


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


def _existing(path: str) -> str:
    if not os.path.isfile(path):
        raise AssetError(f"asset file not found: {path}")
    return path


def _check_fetchable(url: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https", "data"):
        return
    if scheme == "s3":
        raise AssetError(f"s3:// URLs are not supported until plughost stores objects in S3: {url}")
    raise AssetError(
        f"cannot open {url!r}: plughost resolves file://, data: and http(s):// URLs, "
        f"not {scheme or 'a bare name'}"
    )


def _data_uri(url: str) -> tuple[str | None, bytes]:
    """The media type and the bytes of a ``data:`` URI."""
    header, sep, payload = url[len("data:") :].partition(",")
    if not sep:
        raise AssetError("data: URI without a comma")
    fields = header.split(";")
    media = fields[0] or None
    if "base64" in fields[1:]:
        import base64
        import binascii

        try:
            text = unquote(payload)
            return media, base64.b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError) as exc:
            raise AssetError(f"data: URI is not valid base64: {exc}") from exc
    return media, unquote_to_bytes(payload)


def _suffix_for(url: str, suffix: str | None) -> str:
    if suffix is not None:
        return suffix
    import mimetypes

    if url.startswith("data:"):
        media = url[5:].split(",", 1)[0].split(";", 1)[0]
        return (mimetypes.guess_extension(media) or "") if media else ""
    return os.path.splitext(urlsplit(url).path)[1] if "://" in url else ""


def _copy_into_temp(url: str, source: str | None, suffix: str | None) -> str:
    """A new temporary file holding the asset; its path."""
    import shutil
    import tempfile

    fd, target = tempfile.mkstemp(prefix="asset-", suffix=_suffix_for(url, suffix))
    try:
        with os.fdopen(fd, "wb") as out:
            if source is not None:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, _CHUNK)
            elif url.startswith("data:"):
                out.write(_data_uri(url)[1])
            else:
                _fetch(url, out)
    except BaseException:
        os.unlink(target)
        raise
    return target


def resolve_url_to_local_path(url: str, suffix: str | None = None) -> AssetFile:
    """``(path, is_temp)``: a local file holding the asset at ``url``.

    A ``file://`` URL or bare path gives the file itself, ``is_temp`` False (no copy; do not
    write to it or delete it). Any other URL is downloaded or decoded into a new temporary
    file, ``is_temp`` True: the caller deletes it. ``suffix`` (such as ``".mp4"``) ends a
    temporary file's name; without it, the URL's extension (or a data: URI's media type)
    gives one. Raises AssetError for an unsupported URL, a missing file or a failed download.
    """
    source = _local_path(url)
    if source is not None:
        return AssetFile(_existing(source), False)
    _check_fetchable(url)
    return AssetFile(_copy_into_temp(url, None, suffix), True)


def download_asset(url: str, suffix: str | None = None) -> AssetFile:
    """``(path, is_temp)`` of a new temporary file holding the asset at ``url``.

    Always a fresh file (``is_temp`` is True, the caller deletes it), a local file included:
    copying keeps the earlier contract, where the caller deleted whatever it got. The result
    unpacks as Mixpeek's tuple and is also the path itself (:class:`AssetFile`). Raises
    AssetError as :func:`resolve_url_to_local_path` does.
    """
    source = _local_path(url)
    if source is not None:
        _existing(source)
    else:
        _check_fetchable(url)
    return AssetFile(_copy_into_temp(url, source, suffix), True)


@contextmanager
def open_asset(url: str, suffix: str | None = None) -> Iterator[str]:
    """Yield a local path holding the asset at ``url``.

    A ``file://`` URL yields its own path (no copy; do not write to it); any other URL is
    downloaded or decoded to a temporary file that is deleted when the block ends.
    """
    path, is_temp = resolve_url_to_local_path(url, suffix)
    try:
        yield path
    finally:
        if is_temp:
            with suppress(FileNotFoundError):
                os.unlink(path)


def _fetch(url: str, out: BinaryIO) -> None:
    import shutil
    import urllib.error
    import urllib.request

    try:
        response = urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.headers is not None and exc.headers.get(_REFUSED_HEADER) == "refused":
            # the egress proxy's answer (http://), its reason in the status line
            raise AssetError(f"cannot download {_shown(url)}: {exc.reason}") from exc
        raise AssetError(f"cannot download {_shown(url)}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
        if "egress policy" in reason or "Tunnel connection failed" in reason:
            # the egress proxy refused the CONNECT of an https:// URL
            raise AssetError(f"cannot download {_shown(url)}: {reason}") from exc
        # no route, no name resolution: in the sandbox, almost always the missing network
        raise AssetError(f"cannot download {_shown(url)}: {reason} ({_EGRESS_HINT})") from exc
    with response:
        shutil.copyfileobj(response, out, _CHUNK)


def _shown(url: str) -> str:
    """The URL without its query, which may hold a signature."""
    return url.split("?", 1)[0]
