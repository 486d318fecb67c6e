"""Archives that read differently depending on the tool: polyglots, zip local headers that
contradict the central directory, data hidden in gaps or after the end, PAX size overrides."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest
from archive_builders import plugin_files, write_tar, write_zip

from plughost.archive import IntakeLimits, UnsafeArchiveError, unpack_archive
from plughost.archive.formats import archive_views

MIB = 1024 * 1024
EOCD = struct.Struct("<4s4H2LH")


def refused(archive: Path, dest: Path, limits: IntakeLimits | None = None) -> list[str]:
    with pytest.raises(UnsafeArchiveError) as caught:
        unpack_archive(archive, dest, limits or IntakeLimits())
    assert list(dest.iterdir()) == []
    return caught.value.errors


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(files: dict[str, bytes], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- polyglots -------------------------------------------------------------------------


def test_zip_whose_first_block_is_a_tar_header_is_refused(tmp_path: Path, dest: Path) -> None:
    # Starts with a zip signature (so it is detected as a zip), yet tar reads a member too.
    tar_part = tar_bytes({"PK\x03\x04evil.py": b"import os\n"})
    archive = tmp_path / "poly.zip"
    archive.write_bytes(tar_part + zip_bytes({"manifest.py": b"x = 1\n"}))

    assert archive_views(archive) == ["tar", "zip"]
    assert refused(archive, dest) == [
        (
            "archive is readable both as tar and as zip (a polyglot file whose members differ "
            "with the tool that opens it)"
        )
    ]


def test_tar_with_a_zip_at_its_end_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "poly.tar"
    archive.write_bytes(tar_bytes({"manifest.py": b"x = 1\n"}) + zip_bytes({"a.py": b"1"}))

    errors = refused(archive, dest)

    assert errors == [
        (
            "archive is readable both as tar and as zip (a polyglot file whose members differ "
            "with the tool that opens it)"
        )
    ]


def test_gzip_followed_by_a_zip_is_refused(tmp_path: Path, dest: Path) -> None:
    gzipped = (write_tar(tmp_path / "p.tgz", plugin_files())).read_bytes()
    archive = tmp_path / "poly.tgz"
    archive.write_bytes(gzipped + zip_bytes({"manifest.py": b"x = 1\n"}))

    assert refused(archive, dest)[0].startswith("archive is readable both as gzip and as zip")


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar"])
def test_ordinary_archives_have_one_view(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "a"
    if kind == "zip":
        write_zip(path, plugin_files())
    else:
        write_tar(path, plugin_files(), mode="w:gz" if kind == "tar.gz" else "w")

    assert archive_views(path) == [{"zip": "zip", "tar.gz": "gzip", "tar": "tar"}[kind]]


# --- zip: local headers against the central directory ---------------------------------


def test_local_header_naming_another_file_is_refused(tmp_path: Path, dest: Path) -> None:
    data = bytearray(zip_bytes({"manifest.py": b"x = 1\n", "pipeline.py": b"y = 2\n"}))
    local = data.index(b"PK\x03\x04")
    data[local + 30 : local + 41] = b"manifesx.py"
    archive = tmp_path / "names.zip"
    archive.write_bytes(bytes(data))

    assert refused(archive, dest) == [
        "archive entry 'manifest.py': local header names 'manifesx.py' instead"
    ]


def test_local_header_declaring_other_sizes_is_refused(tmp_path: Path, dest: Path) -> None:
    data = bytearray(zip_bytes({"manifest.py": b"x = 1\n" * 100}))
    local = data.index(b"PK\x03\x04")
    data[local + 22 : local + 26] = (6).to_bytes(4, "little")
    archive = tmp_path / "sizes.zip"
    archive.write_bytes(bytes(data))

    assert refused(archive, dest) == [
        (
            "archive entry 'manifest.py': local header declares another CRC or size than the "
            "central directory"
        )
    ]


def test_member_hidden_between_listed_members_is_refused(tmp_path: Path, dest: Path) -> None:
    files = {"manifest.py": b"x = 1\n", "hidden.py": b"import os\n", "pipeline.py": b"y\n"}
    data = bytearray(zip_bytes(files))
    eocd_at = data.rindex(b"PK\x05\x06")
    fields = list(EOCD.unpack_from(data, eocd_at))
    records = [i for i in range(len(data)) if data[i : i + 4] == b"PK\x01\x02"]
    hidden_start, hidden_end = records[1], records[2]
    del data[hidden_start:hidden_end]  # drop hidden.py from the central directory only
    fields[3] -= 1
    fields[4] -= 1
    fields[5] -= hidden_end - hidden_start
    eocd_at -= hidden_end - hidden_start
    data[eocd_at : eocd_at + EOCD.size] = EOCD.pack(*fields)
    archive = tmp_path / "hidden.zip"
    archive.write_bytes(bytes(data))
    assert zipfile.ZipFile(archive).namelist() == ["manifest.py", "pipeline.py"]

    errors = refused(archive, dest)

    assert len(errors) == 1
    assert errors[0].startswith("archive entry 'pipeline.py': ")
    assert errors[0].endswith("unlisted bytes lie before this member")


def test_bytes_after_the_end_record_are_refused(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "tail.zip"
    archive.write_bytes(zip_bytes({"manifest.py": b"x = 1\n"}) + b"#!/bin/sh\nid\n")

    assert refused(archive, dest) == ["archive has 13 unexpected bytes after its end record"]


def test_bytes_prepended_to_a_zip_are_refused(tmp_path: Path, dest: Path) -> None:
    hidden = zip_bytes({"evil.py": b"import os\n"})
    hidden_local = hidden[: hidden.index(b"PK\x01\x02")]
    archive = tmp_path / "prefixed.zip"
    archive.write_bytes(hidden_local + zip_bytes({"manifest.py": b"x = 1\n"}))

    assert refused(archive, dest) == [
        "archive's central directory is not where its end record says (bytes prepended?)"
    ]


def test_zip_written_as_a_stream_with_data_descriptors_is_accepted(
    tmp_path: Path, dest: Path
) -> None:
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, chunk: bytes) -> int:  # type: ignore[override]
            self.data.extend(chunk)
            return len(chunk)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in plugin_files().items():
            with archive.open(name, "w") as member:
                member.write(content.encode() if isinstance(content, str) else content)
    path = tmp_path / "streamed.zip"
    path.write_bytes(bytes(sink.data))
    assert b"PK\x07\x08" in sink.data

    unpack_archive(path, dest, IntakeLimits())

    assert (dest / "manifest.py").is_file()


# --- tar: data tarfile would not see -------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_members_hidden_behind_a_corrupt_tar_header_are_refused(
    tmp_path: Path, dest: Path, compress: bool
) -> None:
    data = bytearray(tar_bytes({"manifest.py": b"x = 1\n", "evil.py": b"import os\n"}))
    second = 1024  # header, one data block, then the second header
    data[second + 148 : second + 156] = b"0000000\0"  # a wrong checksum
    archive = tmp_path / "hidden.tar"
    if compress:
        import gzip

        archive.write_bytes(gzip.compress(bytes(data)))
    else:
        archive.write_bytes(bytes(data))

    assert refused(archive, dest) == [
        "archive holds data after its last readable member (a corrupt header?)"
    ]


def test_pax_header_overriding_the_size_is_refused(tmp_path: Path, dest: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("manifest.py")
        info.size = 6
        info.pax_headers = {"size": "6"}
        archive.addfile(info, io.BytesIO(b"x = 1\n"))
    path = tmp_path / "pax.tar"
    path.write_bytes(buffer.getvalue())

    assert refused(path, dest) == [
        (
            "archive entry 'manifest.py': a PAX header overrides the member's size (readers "
            "disagree on its data)"
        )
    ]


def test_gzip_bomb_stops_as_soon_as_the_ratio_is_passed(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "bomb.tgz", {"zeros.bin": bytes(64 * MIB)})

    errors = refused(archive, dest)

    assert len(errors) == 1 and errors[0].startswith("gzip stream: compression ratio ")
    ratio = int(errors[0].split("compression ratio ")[1].split()[0])
    assert 200 < ratio < 260  # stopped near the bound, not after inflating all 64 MiB
