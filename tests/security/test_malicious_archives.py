"""Malicious plugin archives uploaded to a live server over HTTP.

Each archive must be refused at upload: the answer says ``validation_status: failed`` with an
error naming the problem, nothing is registered, nothing is left in the server's work folder
or anywhere else in its home (besides its database and log), no file appears outside (the
marker each archive tries to plant), and the server keeps answering. One server (SQLite)
serves the whole module.
"""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support import LiveServer, plugin_files, unique_name

NS = "ns_default"
MIB = 1024 * 1024
POLYGLOT = "polyglot"


@dataclass(frozen=True)
class Target:
    """Where an archive may try to plant its marker file."""

    marker: str
    outside: Path


@dataclass(frozen=True)
class Case:
    """One malicious archive: ``build`` returns its bytes; one of ``expect`` must appear in
    an error."""

    id: str
    build: Callable[[str, Target], bytes]
    expect: tuple[str, ...]


# --- builders ------------------------------------------------------------------------------


def base_files(name: str) -> dict[str, bytes]:
    return {
        path: data.encode() if isinstance(data, str) else data
        for path, data in plugin_files(name).items()
    }


def zip_of(
    files: dict[str, bytes] | list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    items = files.items() if isinstance(files, dict) else files
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in items:
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_member(
    name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    if data is not None:
        info.size = len(data)
    return info, data


def tar_of(
    name: str, extra: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz"
) -> bytes:
    members = [tar_member(path, data) for path, data in base_files(name).items()] + extra
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=tarfile.GNU_FORMAT) as archive:  # type: ignore[call-overload]
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def with_file(
    path: str, data: bytes, method: int = zipfile.ZIP_DEFLATED
) -> Callable[[str, Target], bytes]:
    return lambda name, _t: zip_of({**base_files(name), path: data}, method)


def zip_traversal(name: str, t: Target) -> bytes:
    return zip_of({**base_files(name), f"../../{t.marker}.py": b"pwned = 1\n"})


def zip_nested_traversal(name: str, t: Target) -> bytes:
    files = {f"demo/{k}": v for k, v in base_files(name).items()}
    return zip_of({**files, f"demo/processors/../../../{t.marker}": b"pwned\n"})


def zip_absolute(name: str, t: Target) -> bytes:
    return zip_of({**base_files(name), f"{t.outside}/{t.marker}": b"pwned\n"})


def zip_backslash(name: str, t: Target) -> bytes:
    return zip_of({**base_files(name), f"..\\..\\{t.marker}.py": b"pwned = 1\n"})


def tar_traversal(name: str, t: Target) -> bytes:
    return tar_of(name, [tar_member(f"../../{t.marker}", b"pwned\n")])


def tar_absolute(name: str, t: Target) -> bytes:
    return tar_of(name, [tar_member(f"{t.outside}/{t.marker}", b"pwned\n")])


def tar_symlink_then_write(name: str, t: Target) -> bytes:
    return tar_of(
        name,
        [
            tar_member("escape", kind=tarfile.SYMTYPE, link=str(t.outside)),
            tar_member(f"escape/{t.marker}", b"pwned\n"),
        ],
    )


def tar_hardlink(name: str, _t: Target) -> bytes:
    return tar_of(name, [tar_member("passwd", kind=tarfile.LNKTYPE, link="/etc/passwd")])


def tar_device(name: str, _t: Target) -> bytes:
    info, _ = tar_member("disk", kind=tarfile.BLKTYPE)
    info.devmajor, info.devminor = 8, 0
    return tar_of(name, [(info, None)])


def tar_fifo(name: str, _t: Target) -> bytes:
    return tar_of(name, [tar_member("pipe", kind=tarfile.FIFOTYPE)])


def zip_symlink(name: str, t: Target) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in base_files(name).items():
            archive.writestr(path, data)
        link = zipfile.ZipInfo("escape")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, str(t.outside))
    return buffer.getvalue()


def zip_duplicate(name: str, _t: Target) -> bytes:
    files = list(base_files(name).items())
    evil = ("realtime.py", b"import os\nos.system('id')\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it writes
        return zip_of([*files, evil])


def zip_tar_polyglot(name: str, _t: Target) -> bytes:
    # The first 512 bytes are a valid tar header that starts with a zip signature.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        payload = b"import os\nos.system('id')\n"
        info = tarfile.TarInfo("PK\x03\x04realtime.py")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue() + zip_of(base_files(name))


def many_entries_zip(name: str, _t: Target) -> bytes:
    return zip_of({**base_files(name), **{f"data/{i}.txt": b"" for i in range(1001)}})


def many_entries_tar(name: str, _t: Target) -> bytes:
    return tar_of(name, [tar_member(f"data/{i}.txt", b"") for i in range(1001)])


def zip_bomb(name: str, _t: Target) -> bytes:
    return zip_of({**base_files(name), "weights.bin": bytes(48 * MIB)})


def gzip_bomb(name: str, _t: Target) -> bytes:
    return tar_of(name, [tar_member("weights.bin", bytes(64 * MIB))])


def _declare_size(name: str, data: bytes, size: int) -> bytes:
    """Rewrite the uncompressed size of stored member ``weights.bin`` in both headers."""
    patched = bytearray(zip_of({**base_files(name), "weights.bin": data}, zipfile.ZIP_STORED))
    local = _local_of(patched, b"weights.bin")
    central = patched.index(b"weights.bin", patched.index(b"PK\x01\x02")) - 46
    for offset in (local + 22, central + 24):
        patched[offset : offset + 4] = size.to_bytes(4, "little")
    return bytes(patched)


def _local_of(data: bytearray, member: bytes) -> int:
    return data.index(member) - 30


def zip_size_lie(name: str, _t: Target) -> bytes:
    """Both headers declare 10 bytes for a member holding 100,000."""
    return _declare_size(name, b"#" * 100_000, 10)


def zip_total_lie(name: str, _t: Target) -> bytes:
    """Both headers declare 600 MB for a member holding 100 bytes."""
    return _declare_size(name, b"#" * 100, 600 * MIB)


def zip_local_header_lie(name: str, _t: Target) -> bytes:
    """The local header (what streaming readers see) names another file than the directory."""
    data = bytearray(zip_of(base_files(name)))
    local = _local_of(data, b"realtime.py")
    data[local + 30 : local + 41] = b"realtimf.py"
    return bytes(data)


def _gz(data: bytes) -> bytes:
    return gzip.compress(data)


def tar_hidden_members(name: str, t: Target) -> bytes:
    """A member behind a corrupt header: tarfile stops there, GNU tar skips it and reads on."""
    plain = bytearray(
        tar_of(name, [tar_member("zzz", b"x"), tar_member(f"{t.marker}.py", b"1")], mode="w")
    )
    zzz = plain.index(b"zzz\0")
    plain[zzz + 148 : zzz + 156] = b"0000000\0"
    return _gz(bytes(plain))


def nested_zip_with_code(name: str, _t: Target) -> bytes:
    inner = zip_of({"evil/__init__.py": b"import os\nos.system('id')\n"})
    return zip_of({**base_files(name), "data/vocab.dat": inner})


def ast_bomb(name: str, _t: Target) -> bytes:
    # ~1.8 MB (stored, so no compression ratio trips first), under the .py size bound: about
    # half a gigabyte for the parser, then too deep to build.
    bomb = b"x" + b"[0]" * 600_000 + b"\n"
    return zip_of({**base_files(name), "processors/bomb.py": bomb}, zipfile.ZIP_STORED)


ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(56)
UTF7_REALTIME = b"# -*- coding: utf_7 -*-\n+AGkAbQBwAG8AcgB0ACAAbwBz-\n"

CASES = [
    Case("zip-dotdot-traversal", zip_traversal, ("'..' path component is not allowed",)),
    Case("zip-nested-traversal", zip_nested_traversal, ("'..' path component is not allowed",)),
    Case("zip-absolute-path", zip_absolute, ("absolute path is not allowed",)),
    Case("zip-backslash-traversal", zip_backslash, ("backslash in path is not allowed",)),
    Case("tar-dotdot-traversal", tar_traversal, ("'..' path component is not allowed",)),
    Case("tar-absolute-path", tar_absolute, ("absolute path is not allowed",)),
    Case(
        "tar-symlink-then-write-through-it",
        tar_symlink_then_write,
        ("symbolic link is not allowed",),
    ),
    Case("tar-hardlink-to-etc-passwd", tar_hardlink, ("hard link is not allowed",)),
    Case("tar-block-device", tar_device, ("device file is not allowed",)),
    Case("tar-fifo", tar_fifo, ("FIFO is not allowed",)),
    Case("zip-symlink", zip_symlink, ("symbolic link is not allowed",)),
    Case("zip-duplicate-names", zip_duplicate, ("duplicate name",)),
    Case("zip-tar-polyglot", zip_tar_polyglot, (POLYGLOT,)),
    Case("zip-1001-entries", many_entries_zip, ("more than 1000 entries",)),
    Case("tar-1001-entries", many_entries_tar, ("more than 1000 entries",)),
    Case("zip-bomb", zip_bomb, ("compression ratio",)),
    Case("gzip-bomb", gzip_bomb, ("gzip stream: compression ratio",)),
    Case(
        "zip-size-lie-in-both-headers",
        zip_size_lie,
        ("'weights.bin': corrupt data", "'weights.bin': holds more data"),
    ),
    Case("zip-local-header-lie", zip_local_header_lie, ("local header names 'realtimf.py'",)),
    Case("zip-headers-claim-600mb", zip_total_lie, ("above the limit of 524288000 bytes",)),
    Case(
        "tar-members-hidden-behind-corrupt-header",
        tar_hidden_members,
        ("data after its last readable member",),
    ),
    Case(
        "pyc-smuggled",
        with_file("__pycache__/pipeline.cpython-311.pyc", b"\xa7\r\r\n" + bytes(12)),
        ("compiled Python bytecode cannot be scanned",),
    ),
    Case(
        "so-smuggled",
        with_file("processors/fast.cpython-311-x86_64-linux-gnu.so", ELF),
        ("native code cannot be scanned",),
    ),
    Case(
        "pth-smuggled",
        with_file("evil.pth", b"import os; os.system('id')\n"),
        ("path configuration files (.pth) are not allowed",),
    ),
    Case("elf-renamed-as-data", with_file("weights.bin", ELF), ("native code (ELF",)),
    Case("nested-zip-of-python", nested_zip_with_code, ("Python can import from it (zipimport)",)),
    Case(
        "stdlib-shadowing-os-py",
        with_file("os.py", b"def system(cmd):\n    return 0\n"),
        ("shadows the standard-library module 'os'",),
    ),
    Case(
        "stdlib-shadowing-json-package",
        with_file("json/__init__.py", b"loads = None\n"),
        ("shadows the standard-library module 'json'",),
    ),
    Case(
        "host-shadowing-shared-package",
        with_file("shared/__init__.py", b""),
        ("shadows plughost's 'shared' package",),
    ),
    Case(
        "utf7-coding-cookie",
        with_file("realtime.py", UTF7_REALTIME),
        ("coding declaration 'utf_7' is not UTF-8",),
    ),
    Case(
        "oversized-py",
        with_file("processors/big.py", b"#" * 2_100_000 + b"\n", zipfile.ZIP_STORED),
        ("above the limit of 2000000 bytes for a .py file",),
    ),
    Case(
        "ast-bomb",
        ast_bomb,
        ("processors/bomb.py:1:1 cannot be parsed", "security scan stopped without a result"),
    ),
]


# --- the server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(home=tmp_path_factory.mktemp("malicious-archives-home"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(archive_server: LiveServer) -> Iterator[httpx.Client]:
    with archive_server.client() as c:
        yield c


@pytest.fixture
def target(tmp_path: Path) -> Target:
    outside = tmp_path / "outside"
    outside.mkdir()
    return Target(marker=f"pwn_{uuid.uuid4().hex[:12]}", outside=outside)


def home_files(home: Path) -> set[str]:
    """Files in the server's home other than its database and logs."""
    return {
        path.relative_to(home).as_posix()
        for path in home.rglob("*")
        if not path.is_dir() and not path.name.startswith(("plughost.db", "server-"))
    }


def planted(marker: str, home: Path, outside: Path) -> list[str]:
    """Every file or folder named after the marker, wherever an archive could aim it."""
    found = [str(path) for root in (home, outside) for path in root.rglob(f"*{marker}*")]
    for folder in (home.parent, outside.parent, Path("/tmp"), Path.cwd(), Path("/")):
        found.extend(str(path) for path in folder.glob(f"*{marker}*"))
    return found


# --- the proof -------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_malicious_archive_is_refused_at_upload(
    case: Case, archive_server: LiveServer, client: httpx.Client, target: Target
) -> None:
    name = unique_name("mal")
    archive = case.build(name, target)
    before = home_files(archive_server.home)

    response = client.post(
        f"/v1/namespaces/{NS}/plugins",
        data={"name": name, "version": "1.0.0"},
        files={"file": ("plugin.zip", archive, "application/zip")},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is False and body["validation_status"] == "failed", body
    errors = body["validation_errors"]
    assert any(needle in error for error in errors for needle in case.expect), errors
    listed = client.get(f"/v1/namespaces/{NS}/plugins").json()["plugins"]
    assert name not in {plugin["name"] for plugin in listed}
    assert client.get(f"/v1/namespaces/{NS}/plugins/{name}_1_0_0").status_code == 404
    work = archive_server.home / "work"
    assert not work.exists() or list(work.iterdir()) == []
    assert home_files(archive_server.home) == before
    assert planted(target.marker, archive_server.home, target.outside) == []
    assert httpx.get(f"{archive_server.url}/healthz", timeout=10).status_code == 200


def test_polyglot_is_refused_through_the_presigned_flow_too(
    archive_server: LiveServer, client: httpx.Client, target: Target
) -> None:
    name = unique_name("mal")
    upload = client.post(
        f"/v1/namespaces/{NS}/plugins/uploads", json={"name": name, "version": "1.0.0"}
    ).json()
    assert (
        httpx.put(upload["presigned_url"], content=zip_tar_polyglot(name, target)).status_code
        == 200
    )

    body = client.post(f"/v1/namespaces/{NS}/plugins/uploads/{upload['upload_id']}/confirm").json()

    assert body["validation_status"] == "failed", body
    assert any(POLYGLOT in error for error in body["validation_errors"])
    work = archive_server.home / "work"
    assert not work.exists() or list(work.iterdir()) == []


def test_server_still_takes_a_valid_plugin_after_the_attacks(client: httpx.Client) -> None:
    name = unique_name("ok")
    response = client.post(
        f"/v1/namespaces/{NS}/plugins",
        data={"name": name, "version": "1.0.0"},
        files={"file": ("plugin.zip", zip_of(base_files(name)), "application/zip")},
    )

    assert response.json()["validation_status"] == "passed", response.text


def test_there_are_at_least_15_malicious_archives() -> None:
    assert len(CASES) >= 15 and len({case.id for case in CASES}) == len(CASES)
