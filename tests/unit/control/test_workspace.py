"""Deployment folders (issue 14): a folder unpacked completely from the same archive is used
again, so replicas that outlived a server keep running from their files; anything else is
unpacked afresh."""

from __future__ import annotations

from pathlib import Path

from support import PIPELINE, zip_bytes

from plughost.archive import IntakeLimits
from plughost.control.workspace import Workspace


class FolderStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def local_path(self, key: str) -> Path:
        return self.root / key


def _workspace(tmp_path: Path) -> Workspace:
    store = tmp_path / "store"
    store.mkdir()
    for key, text in (("a.zip", "v = 1\n"), ("b.zip", "v = 2\n")):
        files = {"manifest.py": 'feature_extractor_name = "w"\n', "pipeline.py": PIPELINE,
                 "realtime.py": text}
        (store / key).write_bytes(zip_bytes(files))
    return Workspace(tmp_path / "work", FolderStore(store), IntakeLimits())  # type: ignore[arg-type]


def test_the_same_archive_reuses_the_unpacked_folder(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    root = ws.prepare(1, "a.zip")
    inode = (root / "realtime.py").stat().st_ino
    again = ws.prepare(1, "a.zip")
    assert again == root and (again / "realtime.py").stat().st_ino == inode


def test_another_archive_or_an_unfinished_folder_is_unpacked_afresh(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    root = ws.prepare(1, "a.zip")
    assert (ws.prepare(1, "b.zip") / "realtime.py").read_text() == "v = 2\n"
    (tmp_path / "work" / "r1.ready").unlink()  # a server died while unpacking
    (root / "realtime.py").write_text("half")
    assert (ws.prepare(1, "b.zip") / "realtime.py").read_text() == "v = 2\n"
    ws.remove(1)
    assert not ws.folder(1).exists() and not (tmp_path / "work" / "r1.ready").exists()


def test_a_new_release_of_the_same_archive_links_the_files_unpacked_before(
    tmp_path: Path,
) -> None:
    ws = _workspace(tmp_path)
    first = ws.prepare(1, "a.zip")
    second = ws.prepare(2, "a.zip")
    assert second != first
    assert (second / "realtime.py").read_text() == "v = 1\n"
    assert (second / "realtime.py").stat().st_ino == (first / "realtime.py").stat().st_ino
    ws.remove(1)  # the first release's folder goes; the second keeps its files
    assert (second / "realtime.py").read_text() == "v = 1\n"
    third = ws.prepare(3, "b.zip")  # another archive: unpacked from it
    assert (third / "realtime.py").read_text() == "v = 2\n"


def test_a_release_folder_no_longer_complete_is_not_linked_from(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    first = ws.prepare(1, "a.zip")
    (tmp_path / "work" / "r1.ready").unlink()  # e.g. being removed
    second = ws.prepare(2, "a.zip")
    assert (second / "realtime.py").stat().st_ino != (first / "realtime.py").stat().st_ino
    assert (second / "realtime.py").read_text() == "v = 1\n"
