"""Safe extraction: formats by magic bytes, hostile paths and entry types, size bombs."""

from __future__ import annotations

import gzip
import io
import random
import stat
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest
from archive_builders import plugin_files, write_raw_tar, write_tar, write_zip

from plughost.archive import (
    ArchiveFormat,
    IntakeLimits,
    UnsafeArchiveError,
    detect_format,
    unpack_archive,
)

MIB = 1024 * 1024


def refused(archive: Path, dest: Path, limits: IntakeLimits | None = None) -> list[str]:
    with pytest.raises(UnsafeArchiveError) as caught:
        unpack_archive(archive, dest, limits or IntakeLimits())
    return caught.value.errors


def tree(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


# --- formats ---------------------------------------------------------------------------


def test_zip_is_unpacked_with_fixed_modes(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(tmp_path / "p.zip", plugin_files(), prefix="demo/")

    assert unpack_archive(archive, dest, IntakeLimits()) is ArchiveFormat.ZIP

    assert (dest / "demo/pipeline.py").read_text().startswith("def build_steps")
    assert stat.S_IMODE((dest / "demo/manifest.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "demo/processors").stat().st_mode) == 0o755


def test_tar_gz_is_unpacked(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "p.tar.gz", plugin_files())

    assert unpack_archive(archive, dest, IntakeLimits()) is ArchiveFormat.TAR_GZ
    assert tree(dest) == [
        "manifest.py",
        "pipeline.py",
        "processors",
        "processors/__init__.py",
        "processors/core.py",
    ]


def test_plain_tar_is_unpacked(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "p.tar", plugin_files(), mode="w")

    assert unpack_archive(archive, dest, IntakeLimits()) is ArchiveFormat.TAR
    assert (dest / "processors/core.py").is_file()


def test_tar_modes_from_the_archive_are_ignored(tmp_path: Path, dest: Path) -> None:
    setuid = tarfile.TarInfo("run.py")
    setuid.mode = 0o4777
    folder = tarfile.TarInfo("bin")
    folder.type = tarfile.DIRTYPE
    folder.mode = 0o777
    archive = write_raw_tar(tmp_path / "p.tgz", [(setuid, b"x = 1\n"), (folder, None)])

    unpack_archive(archive, dest, IntakeLimits())

    assert stat.S_IMODE((dest / "run.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "bin").stat().st_mode) == 0o755


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (lambda p: write_zip(p, {"a.py": "x"}), ArchiveFormat.ZIP),
        (lambda p: write_tar(p, {"a.py": "x"}), ArchiveFormat.TAR_GZ),
        (lambda p: write_tar(p, {"a.py": "x"}, mode="w"), ArchiveFormat.TAR),
    ],
)
def test_format_is_detected_by_magic_not_name(tmp_path: Path, builder, expected) -> None:  # type: ignore[no-untyped-def]
    archive = builder(tmp_path / "upload")  # no extension at all

    assert detect_format(archive) is expected
    out = tmp_path / "out"
    out.mkdir()
    assert unpack_archive(archive, out, IntakeLimits()) is expected
    assert (out / "a.py").read_text() == "x"


def test_misleading_extension_does_not_matter(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(tmp_path / "really-a-zip.tar.gz", {"a.py": "x"})

    assert unpack_archive(archive, dest, IntakeLimits()) is ArchiveFormat.ZIP


def test_empty_zip_unpacks_to_nothing(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "empty.zip"
    zipfile.ZipFile(archive, "w").close()

    assert unpack_archive(archive, dest, IntakeLimits()) is ArchiveFormat.ZIP
    assert tree(dest) == []


def test_dot_slash_prefixed_tar_names_are_accepted(tmp_path: Path, dest: Path) -> None:
    root = tarfile.TarInfo(".")
    root.type = tarfile.DIRTYPE
    members = [(root, None), (tarfile.TarInfo("./manifest.py"), b"x = 1\n")]
    archive = write_raw_tar(tmp_path / "p.tgz", members)

    unpack_archive(archive, dest, IntakeLimits())

    assert tree(dest) == ["manifest.py"]


def test_macos_litter_is_not_unpacked(tmp_path: Path, dest: Path) -> None:
    files: dict[str, bytes | str] = {
        "demo/manifest.py": "x = 1",
        "demo/.DS_Store": b"\0\0\0\1Bud1",
        "demo/._manifest.py": b"\0\5\26\7binary",
        "__MACOSX/demo/._pipeline.py": b"\0\5\26\7binary",
    }
    archive = write_zip(tmp_path / "mac.zip", files)

    unpack_archive(archive, dest, IntakeLimits())

    assert tree(dest) == ["demo", "demo/manifest.py"]


# --- corrupt input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"", b"hello, I am not an archive" * 40, b"\x89PNG\r\n\x1a\n" + bytes(600)],
)
def test_unknown_format_is_refused(tmp_path: Path, dest: Path, payload: bytes) -> None:
    archive = tmp_path / "upload.zip"
    archive.write_bytes(payload)

    assert refused(archive, dest) == ["archive is neither a zip nor a tar.gz file"]


def test_truncated_zip_is_corrupt(tmp_path: Path, dest: Path) -> None:
    whole = write_zip(tmp_path / "p.zip", plugin_files()).read_bytes()
    archive = tmp_path / "cut.zip"
    archive.write_bytes(whole[: len(whole) // 2])

    errors = refused(archive, dest)

    assert len(errors) == 1 and errors[0].startswith("archive is corrupt:")


def test_truncated_gzip_is_corrupt(tmp_path: Path, dest: Path) -> None:
    whole = write_tar(tmp_path / "p.tgz", plugin_files()).read_bytes()
    archive = tmp_path / "cut.tgz"
    archive.write_bytes(whole[: len(whole) // 2])

    errors = refused(archive, dest)

    assert len(errors) == 1 and errors[0].startswith("archive is corrupt:")


def test_gzip_of_something_else_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "notes.gz"
    archive.write_bytes(gzip.compress(b"just some text, not a tar archive\n" * 30))

    assert refused(archive, dest) == ["archive is neither a zip nor a tar.gz file"]


def test_zip_header_that_understates_the_size_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("big.py", b"#" * 1000)
    data = bytearray(archive.read_bytes())
    # Shrink the declared uncompressed size in the local header and the central directory.
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local + 22 : local + 26] = (10).to_bytes(4, "little")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))

    errors = refused(archive, dest)

    assert errors == [errors[0]] and "'big.py'" in errors[0] and "corrupt data" in errors[0]


def test_archive_above_the_size_limit_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(tmp_path / "p.zip", plugin_files())
    limits = IntakeLimits(max_archive_bytes=100)

    errors = refused(archive, dest, limits)

    assert errors == [f"archive is {archive.stat().st_size} bytes, above the limit of 100 bytes"]


# --- hostile names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.py", "'..' path component is not allowed"),
        ("demo/../../evil.py", "'..' path component is not allowed"),
        ("/etc/evil.py", "absolute path is not allowed"),
        ("..\\evil.py", "backslash in path is not allowed"),
        ("demo\\..\\..\\evil.py", "backslash in path is not allowed"),
        ("C:/evil.py", "drive letter in path is not allowed"),
        ("demo/new\nline.py", "name contains a NUL or control character"),
    ],
)
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_hostile_names_are_refused_before_anything_is_written(
    tmp_path: Path, dest: Path, name: str, reason: str, kind: str
) -> None:
    files = {"demo/manifest.py": "x = 1", name: "owned = True"}
    path = tmp_path / "bad"
    archive = write_zip(path, files) if kind == "zip" else write_tar(path, files)

    errors = refused(archive, dest)

    assert errors == [f"archive entry {name!r}: {reason}"]
    assert tree(dest) == []
    assert not (tmp_path / "evil.py").exists()


def test_every_bad_entry_is_reported(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "p.tgz", {"../a.py": "", "/b.py": "", "ok.py": ""})

    errors = refused(archive, dest)

    assert errors == [
        "archive entry '../a.py': '..' path component is not allowed",
        "archive entry '/b.py': absolute path is not allowed",
    ]


def test_non_utf8_tar_name_is_refused(tmp_path: Path, dest: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo("caf\udce9.py")  # raw byte 0xE9 via surrogateescape
        info.size = 0
        archive.addfile(info, io.BytesIO())
    path = tmp_path / "latin1.tar"
    path.write_bytes(buffer.getvalue())

    errors = refused(path, dest)

    assert len(errors) == 1 and errors[0].endswith("name is not valid UTF-8")


# --- hostile entry types ---------------------------------------------------------------


def _tar_member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("kind", "linkname", "what"),
    [
        (tarfile.SYMTYPE, "/etc/passwd", "symbolic link"),
        (tarfile.LNKTYPE, "manifest.py", "hard link"),
        (tarfile.CHRTYPE, "", "device file"),
        (tarfile.BLKTYPE, "", "device file"),
        (tarfile.FIFOTYPE, "", "FIFO"),
    ],
)
def test_tar_special_members_are_refused(
    tmp_path: Path, dest: Path, kind: bytes, linkname: str, what: str
) -> None:
    members = [
        (tarfile.TarInfo("manifest.py"), b"x = 1\n"),
        (_tar_member("pipeline.py", kind, linkname), None),
    ]
    archive = write_raw_tar(tmp_path / "p.tgz", members)

    assert refused(archive, dest) == [f"archive entry 'pipeline.py': {what} is not allowed"]
    assert tree(dest) == []


@pytest.mark.parametrize(
    ("file_type", "what"),
    [
        (stat.S_IFLNK, "symbolic link"),
        (stat.S_IFIFO, "FIFO"),
        (stat.S_IFCHR, "device file"),
        (stat.S_IFSOCK, "socket"),
    ],
)
def test_zip_special_members_are_refused(
    tmp_path: Path, dest: Path, file_type: int, what: str
) -> None:
    archive = tmp_path / "p.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("manifest.py", "x = 1\n")
        info = zipfile.ZipInfo("pipeline.py")
        info.create_system = 3
        info.external_attr = (file_type | 0o777) << 16
        zf.writestr(info, "/etc/passwd")

    assert refused(archive, dest) == [f"archive entry 'pipeline.py': {what} is not allowed"]
    assert tree(dest) == []


def test_encrypted_zip_entry_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(tmp_path / "p.zip", {"secret.py": "x = 1\n"})
    data = bytearray(archive.read_bytes())
    # Set the "encrypted" flag bit in the local header and the central directory record.
    data[data.index(b"PK\x03\x04") + 6] |= 0x1
    data[data.index(b"PK\x01\x02") + 8] |= 0x1
    archive.write_bytes(bytes(data))

    assert refused(archive, dest) == [
        "archive entry 'secret.py': encrypted entries are not supported"
    ]


# --- clashes and counts ----------------------------------------------------------------


def test_duplicate_zip_names_are_refused(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "p.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("manifest.py", "safe = True\n")
            zf.writestr("manifest.py", "import subprocess\n")

    assert refused(archive, dest) == ["archive entry 'manifest.py': duplicate name"]


def test_duplicate_tar_names_are_refused_even_when_spelled_differently(
    tmp_path: Path, dest: Path
) -> None:
    members = [
        (tarfile.TarInfo("demo/manifest.py"), b"safe = True\n"),
        (tarfile.TarInfo("./demo//manifest.py"), b"import subprocess\n"),
    ]
    archive = write_raw_tar(tmp_path / "p.tgz", members)

    assert refused(archive, dest) == ["archive entry './demo//manifest.py': duplicate name"]


def test_name_used_as_file_and_directory_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(tmp_path / "p.zip", {"processors": "x", "processors/core.py": "y"})

    assert refused(archive, dest) == [
        "archive entry 'processors': used both as a file and as a directory"
    ]


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_more_than_1000_entries_is_refused(tmp_path: Path, dest: Path, kind: str) -> None:
    files = {f"f{index:04}.txt": "" for index in range(1001)}
    path = tmp_path / "many"
    archive = write_zip(path, files) if kind == "zip" else write_tar(path, files)

    errors = refused(archive, dest)

    assert errors == ["archive has more than 1000 entries"]
    assert tree(dest) == []


def test_exactly_1000_entries_is_accepted(tmp_path: Path, dest: Path) -> None:
    files = {f"f{index:04}.txt": "" for index in range(1000)}
    archive = write_zip(tmp_path / "many.zip", files)

    unpack_archive(archive, dest, IntakeLimits())

    assert len(tree(dest)) == 1000


# --- size bombs ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_declared_total_above_the_limit_is_refused_before_writing(
    tmp_path: Path, dest: Path, kind: str
) -> None:
    noise = random.Random(7)
    files = {"a.bin": noise.randbytes(MIB), "b.bin": noise.randbytes(MIB)}
    path = tmp_path / "big"
    archive = write_zip(path, files) if kind == "zip" else write_tar(path, files)
    limits = IntakeLimits(max_unpacked_bytes=MIB + MIB // 2)

    errors = refused(archive, dest, limits)

    assert errors == [
        f"archive unpacks to {2 * MIB} bytes, above the limit of {MIB + MIB // 2} bytes"
    ]
    assert tree(dest) == []


def test_zip_bomb_entry_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(tmp_path / "bomb.zip", {"weights.bin": bytes(5 * MIB)})
    limits = IntakeLimits(max_compression_ratio=50.0)

    errors = refused(archive, dest, limits)

    assert len(errors) == 1
    assert errors[0].startswith("archive entry 'weights.bin': compression ratio ")
    assert errors[0].endswith("exceeds the limit of 50")
    assert tree(dest) == []


def test_compressible_entry_below_one_mib_is_not_a_bomb(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(tmp_path / "ok.zip", {"zeros.bin": bytes(MIB)})

    unpack_archive(archive, dest, IntakeLimits(max_compression_ratio=2.0))

    assert (dest / "zeros.bin").stat().st_size == MIB


def test_gzip_bomb_is_stopped_while_decompressing(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "bomb.tgz", {"zeros.bin": bytes(40 * MIB)})
    limits = IntakeLimits(max_unpacked_bytes=2 * MIB, max_entries=10)

    errors = refused(archive, dest, limits)

    assert len(errors) == 1
    assert errors[0].startswith("gzip stream unpacks to more than the limit of ")
    assert tree(dest) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.tgz", "out"]


def test_gzip_stream_ratio_is_bounded(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "bomb.tgz", {"zeros.bin": bytes(5 * MIB)})
    limits = IntakeLimits(max_compression_ratio=50.0)

    errors = refused(archive, dest, limits)

    assert len(errors) == 1 and errors[0].startswith("gzip stream: compression ratio ")


def test_zip_with_an_archive_comment_is_read(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "commented.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("manifest.py", "x = 1\n")
        zf.comment = b"built by a tool that leaves a comment" * 100

    unpack_archive(archive, dest, IntakeLimits())

    assert tree(dest) == ["manifest.py"]


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar"])
def test_mutated_archives_only_ever_fail_cleanly(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "source"
    if kind == "zip":
        write_zip(source, plugin_files(), "demo/")
    else:
        write_tar(source, plugin_files(), "demo/", mode="w:gz" if kind == "tar.gz" else "w")
    original = source.read_bytes()
    noise = random.Random(kind)
    outcomes = set()
    for round_ in range(150):
        data = bytearray(original)
        for _ in range(noise.randint(1, 6)):
            data[noise.randrange(len(data))] = noise.randrange(256)
        mutated = tmp_path / f"m{round_}"
        mutated.write_bytes(bytes(data))
        out = tmp_path / f"o{round_}"
        out.mkdir()
        try:
            unpack_archive(mutated, out, IntakeLimits())
            outcomes.add("ok")
        except UnsafeArchiveError as exc:
            assert exc.errors and all(isinstance(error, str) for error in exc.errors)
            outcomes.add("refused")

    assert "refused" in outcomes
