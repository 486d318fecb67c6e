"""A package index on disk for the supply-chain tests (no network): ``file://`` simple
index with wheels and source distributions made here.

``sdist_with_build_script`` makes an sdist whose in-tree build backend (what its ``setup.py``
imports) writes marker files at absolute paths when it runs, then builds a working wheel: a
marker that appears means build code ran with write access to that path.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

BACKEND = """
import base64, hashlib, pathlib, socket, zipfile

NET = "no probe"
if {port!r}:
    try:
        socket.create_connection(("127.0.0.1", {port!r}), timeout=3).close()
        NET = "reached"
    except OSError:
        NET = "blocked"

MARKERS = {markers!r}
for target in [*MARKERS, pathlib.Path.home() / "ran-build-script"]:
    try:
        pathlib.Path(target).write_text("build script ran")
    except OSError:
        pass

NAME, VERSION = {name!r}, "1.0"
DIST = f"{{NAME}}-{{VERSION}}.dist-info"
METADATA = f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n"
FILES = {{
    f"{{NAME}}/__init__.py": f"VALUE = 'built from source'\\nNET = {{NET!r}}\\n",
    f"{{DIST}}/METADATA": METADATA,
    f"{{DIST}}/WHEEL": "Wheel-Version: 1.0\\nGenerator: probe\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}}


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    folder = pathlib.Path(metadata_directory) / DIST
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "METADATA").write_text(METADATA)
    return DIST


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{{NAME}}-{{VERSION}}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / name, "w") as zf:
        for path, text in FILES.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{{path}},sha256={{digest.decode()}},{{len(data)}}")
            zf.writestr(path, data)
        record.append(f"{{DIST}}/RECORD,,")
        zf.writestr(f"{{DIST}}/RECORD", "\\n".join(record) + "\\n")
    return name
"""

PYPROJECT = """[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "{name}"
version = "1.0"
"""

SETUP_PY = "import backend  # the build script: writes the marker when it runs\n"


def _add(tf: tarfile.TarFile, path: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(path)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def sdist_with_build_script(name: str, *markers: Path, port: int = 0) -> bytes:
    """A ``.tar.gz`` sdist of ``name`` 1.0 whose build writes each of ``markers`` (and a
    file in its home folder) and, with ``port``, tries to connect to that loopback port: the
    module it builds says ``NET = "reached"`` or ``"blocked"``."""
    buf = io.BytesIO()
    top = f"{name.replace('-', '_')}-1.0"
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        _add(tf, f"{top}/PKG-INFO", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        _add(tf, f"{top}/pyproject.toml", PYPROJECT.format(name=name))
        _add(
            tf,
            f"{top}/backend.py",
            BACKEND.format(
                markers=[str(m) for m in markers], name=name.replace("-", "_"), port=port
            ),
        )
        _add(tf, f"{top}/setup.py", SETUP_PY)
    return buf.getvalue()


def wheel(name: str, version: str = "1.0") -> bytes:
    """A pure-Python wheel of ``name`` whose module holds ``VALUE = 42``."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": "VALUE = 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    buf = io.BytesIO()
    record = []
    with zipfile.ZipFile(buf, "w") as zf:
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
            zf.writestr(path, data)
        record.append(f"{dist}/RECORD,,")
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return buf.getvalue()


def local_index(root: Path, files: dict[str, dict[str, bytes]]) -> str:
    """Write a PEP 503 simple index under ``root``: ``files`` maps a project name to its
    files (filename -> bytes). Returns the ``file://`` URL of ``root/simple``."""
    simple = root / "simple"
    (root / "files").mkdir(parents=True, exist_ok=True)
    links = []
    for project, entries in sorted(files.items()):
        folder = simple / project
        folder.mkdir(parents=True, exist_ok=True)
        anchors = []
        for filename, data in sorted(entries.items()):
            (root / "files" / filename).write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            anchors.append(f'<a href="../../files/{filename}#sha256={digest}">{filename}</a>')
        (folder / "index.html").write_text("<html><body>" + "\n".join(anchors) + "</body></html>")
        links.append(f'<a href="{project}/">{project}</a>')
    (simple / "index.html").write_text("<html><body>" + "\n".join(links) + "</body></html>")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return simple.resolve().as_uri()
