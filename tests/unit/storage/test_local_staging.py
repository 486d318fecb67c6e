"""The local store's staging of presigned uploads (plughost.storage.staging): the signed PUT
writes ``incoming/<key>``, and only commit's checked copy ever writes the key itself."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plughost.errors import ConflictError
from plughost.storage.local import LocalArchiveStore
from plughost.storage.staging import commit_copy, staging_key

KEY = "plugins/org/ns/name/1.0.0/upl_1.archive"


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _stage(store: LocalArchiveStore, data: bytes) -> str:
    stored = asyncio.run(store.put_stream(staging_key(KEY), _chunks(data), 1 << 20))
    return stored.etag


def test_staged_then_committed_bytes_become_the_archive(tmp_path: Path) -> None:
    store = LocalArchiveStore(tmp_path)
    etag = _stage(store, b"first")
    assert store.stat(KEY) is None  # the PUT never writes the key
    staged = store.staged(KEY)
    assert staged is not None and staged.etag == etag == hashlib.md5(b"first").hexdigest()
    store.commit(KEY, etag)
    assert store.local_path(KEY).read_bytes() == b"first"
    store.discard_staged(KEY)
    assert store.staged(KEY) is None and store.local_path(KEY).read_bytes() == b"first"


def test_a_commit_of_bytes_replaced_since_the_check_is_refused(tmp_path: Path) -> None:
    store = LocalArchiveStore(tmp_path)
    checked = _stage(store, b"first")
    store.commit(KEY, checked)
    # a replay lands in staging after confirm checked it: the archive keeps the checked bytes
    _stage(store, b"replayed")
    with pytest.raises(ConflictError, match="changed while it was confirmed"):
        store.commit(KEY, checked)
    assert store.local_path(KEY).read_bytes() == b"first"
    assert not [p for p in store.local_path(KEY).parent.iterdir() if p.name.startswith(".")]


def test_a_commit_without_a_staged_file_is_a_conflict(tmp_path: Path) -> None:
    with pytest.raises(ConflictError, match="went away"):
        commit_copy(tmp_path / "missing", tmp_path / "target", "0" * 32)
    assert not (tmp_path / "target").exists()
    assert list(tmp_path.iterdir()) == []
