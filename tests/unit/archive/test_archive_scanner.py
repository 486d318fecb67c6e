"""Static security scan: baseline rules, aliases, allowed code, fail-closed parsing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plughost.archive import IntakeLimits, scan_source, scan_tree


def only_messages(findings: list[str]) -> list[str]:
    return [finding.split(" ", 1)[1] for finding in findings]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # contract baseline: imports
        ("import subprocess", ["m.py:1:8 import of 'subprocess' is not allowed"]),
        ("import ctypes.util", ["m.py:1:8 import of 'ctypes.util' is not allowed"]),
        ("import socket", ["m.py:1:8 import of 'socket' is not allowed"]),
        ("import multiprocessing", ["m.py:1:8 import of 'multiprocessing' is not allowed"]),
        ("import threading", ["m.py:1:8 import of 'threading' is not allowed"]),
        ("from subprocess import run", ["m.py:1:1 import of 'subprocess' is not allowed"]),
        (
            "from multiprocessing.pool import Pool",
            ["m.py:1:1 import of 'multiprocessing.pool' is not allowed"],
        ),
        ("from threading import Thread", ["m.py:1:1 import of 'threading' is not allowed"]),
        ("import json, socket", ["m.py:1:14 import of 'socket' is not allowed"]),
        # contract baseline: calls
        ("import os\nos.system('ls')", ["m.py:2:1 call to 'os.system' is not allowed"]),
        ("import os\nos.popen('ls')", ["m.py:2:1 call to 'os.popen' is not allowed"]),
        ("import os\nos.execv('/bin/sh', [])", ["m.py:2:1 call to 'os.execv' is not allowed"]),
        ("import os\nos.execl('/bin/sh')", ["m.py:2:1 call to 'os.execl' is not allowed"]),
        ("import os\nos.execve('a', [], {})", ["m.py:2:1 call to 'os.execve' is not allowed"]),
        ("import os\nos.execvpe('a', [], {})", ["m.py:2:1 call to 'os.execvpe' is not allowed"]),
        ("eval('1')", ["m.py:1:1 call to 'eval' is not allowed"]),
        ("exec('x = 1')", ["m.py:1:1 call to 'exec' is not allowed"]),
        ("open('/etc/passwd')", ["m.py:1:1 call to 'open' is not allowed"]),
        ("__import__('os')", ["m.py:1:1 call to '__import__' is not allowed"]),
        # beyond the baseline
        ("import os\nos.spawnl(0, 'a')", ["m.py:2:1 call to 'os.spawnl' is not allowed"]),
        ("import os\nos.fork()", ["m.py:2:1 call to 'os.fork' is not allowed"]),
        ("import os\nos.forkpty()", ["m.py:2:1 call to 'os.forkpty' is not allowed"]),
        (
            "import os\nos.posix_spawn('a', [], {})",
            ["m.py:2:1 call to 'os.posix_spawn' is not allowed"],
        ),
        ("import importlib", ["m.py:1:8 import of 'importlib' is not allowed"]),
        (
            "from importlib import import_module",
            ["m.py:1:1 import of 'importlib' is not allowed"],
        ),
        ("import pty", ["m.py:1:8 import of 'pty' is not allowed"]),
        ("import posix", ["m.py:1:8 import of 'posix' is not allowed"]),
        ("import pickle", ["m.py:1:8 import of 'pickle' is not allowed"]),
        ("import marshal", ["m.py:1:8 import of 'marshal' is not allowed"]),
        ("import builtins", ["m.py:1:8 import of 'builtins' is not allowed"]),
        ("breakpoint()", ["m.py:1:1 call to 'breakpoint' is not allowed"]),
        ("compile('1', 'f', 'eval')", ["m.py:1:1 call to 'compile' is not allowed"]),
        ("import io\nio.open('f')", ["m.py:2:1 call to 'io.open' is not allowed"]),
        (
            "from asyncio import subprocess",
            ["m.py:1:21 import of 'asyncio.subprocess' is not allowed"],
        ),
        ("__builtins__['eval']", ["m.py:1:1 use of '__builtins__' is not allowed"]),
        (
            "().__class__.__base__.__subclasses__()",
            ["m.py:1:1 access to attribute '__subclasses__' is not allowed"],
        ),
        ("f.__globals__", ["m.py:1:1 access to attribute '__globals__' is not allowed"]),
    ],
)
def test_blocked_code_is_reported(source: str, expected: list[str]) -> None:
    assert scan_source("m.py", source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os as o\no.system('x')", ["m.py:2:1 call to 'os.system' is not allowed"]),
        (
            "from os import system\nsystem('x')",
            [
                "m.py:1:16 import of 'os.system' is not allowed",
                "m.py:2:1 call to 'os.system' is not allowed",
            ],
        ),
        (
            "from os import popen as p\np('x')",
            [
                "m.py:1:16 import of 'os.popen' is not allowed",
                "m.py:2:1 call to 'os.popen' is not allowed",
            ],
        ),
        (
            "import os as o\nalias = o\nalias.execv('a', [])",
            ["m.py:3:1 call to 'os.execv' is not allowed"],
        ),
        (
            "import os\nrun = os.system\nrun('x')",
            [
                "m.py:2:7 use of 'os.system' is not allowed",
                "m.py:3:1 call to 'os.system' is not allowed",
            ],
        ),
        ("run = eval\nrun('1')", ["m.py:1:7 use of 'eval' is not allowed"]),
        (
            "import subprocess as sp\nsp.run(['ls'])",
            ["m.py:1:8 import of 'subprocess' is not allowed"],
        ),
        ("import os\ngetattr(os, 'system')('x')", ["m.py:2:1 use of 'os.system' is not allowed"]),
        (
            "getattr(f, '__globals__')",
            ["m.py:1:1 access to attribute '__globals__' is not allowed"],
        ),
        ("from os import *", ["m.py:1:16 star import from 'os' is not allowed"]),
        (
            "def handler():\n    import os\n    if True:\n        os.system('x')",
            ["m.py:4:9 call to 'os.system' is not allowed"],
        ),
    ],
)
def test_aliases_are_resolved(source: str, expected: list[str]) -> None:
    assert scan_source("m.py", source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "import os",
        "import os\nkey = os.environ.get('API_KEY')\nos.environ['X'] = '1'",
        "import os\npath = os.path.join(os.path.dirname(__file__), 'weights')",
        "import os.path\nfrom os import path, environ\nfrom os.path import join",
        "value = getattr(obj, 'name', None)\nok = hasattr(obj, 'run')",
        "import re\nre.compile('a+')\nfrom re import compile as rc\nrc('b')",
        "self.open()\nmodel.compile()\nnode.eval()\nsession.exec(x)",
        "from .utils import open\nopen('cfg')",
        "import json, math, typing\nfrom concurrent.futures import ThreadPoolExecutor",
        "def f(obj):\n    return obj.__class__.__name__",
        "from shared.plugins.inference.serve import BaseInferenceService",
        "",
    ],
)
def test_allowed_code_has_no_findings(source: str) -> None:
    assert scan_source("m.py", source) == []


def test_findings_are_sorted_by_line_and_column() -> None:
    source = "import os\nx = 1; eval('2')\nos.system('a'); exec('b')\nimport socket\n"

    assert scan_source("pkg/mod.py", source) == [
        "pkg/mod.py:2:8 call to 'eval' is not allowed",
        "pkg/mod.py:3:1 call to 'os.system' is not allowed",
        "pkg/mod.py:3:17 call to 'exec' is not allowed",
        "pkg/mod.py:4:8 import of 'socket' is not allowed",
    ]


def test_syntax_error_is_a_finding() -> None:
    findings = scan_source("bad.py", "x = 1\ndef broken(:\n    pass\n")

    assert len(findings) == 1
    assert findings[0].startswith("bad.py:2:")
    assert "syntax error: " in findings[0]


def test_null_bytes_are_a_finding() -> None:
    findings = scan_source("nul.py", "x = 1\0")

    assert len(findings) == 1 and findings[0].startswith("nul.py:1:")


def test_deeply_nested_source_fails_closed() -> None:
    findings = scan_source("deep.py", "x = " + "(" * 5000 + ")" * 5000)

    assert len(findings) == 1 and findings[0].startswith("deep.py:")


# --- whole trees -----------------------------------------------------------------------


def write(root: Path, name: str, data: str | bytes) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)


def test_tree_findings_are_sorted_by_file_then_line(tmp_path: Path) -> None:
    write(tmp_path, "pipeline.py", "import os\n\nos.system('x')\n")
    write(tmp_path, "manifest.py", "eval('1')\n")
    write(tmp_path, "processors/core.py", "\nimport socket\n")
    write(tmp_path, "README.md", "import subprocess\n")  # not Python: not scanned

    assert scan_tree(tmp_path, IntakeLimits()) == [
        "manifest.py:1:1 call to 'eval' is not allowed",
        "pipeline.py:3:1 call to 'os.system' is not allowed",
        "processors/core.py:2:8 import of 'socket' is not allowed",
    ]


def test_clean_tree_passes(tmp_path: Path) -> None:
    write(tmp_path, "manifest.py", "name = 'x'\n")
    write(tmp_path, "processors/core.py", "import os\nos.environ.get('A')\n")

    assert scan_tree(tmp_path, IntakeLimits()) == []


def test_oversized_python_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "big.py", "x = 1\n" * 100)

    assert scan_tree(tmp_path, IntakeLimits(max_py_file_bytes=100)) == [
        "big.py:1:1 file is 600 bytes, above the limit of 100 bytes for a .py file"
    ]


@pytest.mark.parametrize(
    "name", ["__pycache__/pipeline.cpython-311.pyc", "helper.pyc", "fast.so", "native.pyd"]
)
def test_compiled_code_is_refused(tmp_path: Path, name: str) -> None:
    write(tmp_path, name, b"\x00binary")

    assert scan_tree(tmp_path, IntakeLimits()) == [
        f"{name}:1:1 compiled or native code cannot be scanned"
    ]


def test_undecodable_source_is_a_finding(tmp_path: Path) -> None:
    write(tmp_path, "latin.py", b"name = '\xe9t\xe9'\n")

    findings = scan_tree(tmp_path, IntakeLimits())

    assert len(findings) == 1 and findings[0].startswith("latin.py:1:1 cannot decode source")


def test_declared_source_encoding_is_honoured(tmp_path: Path) -> None:
    write(tmp_path, "latin.py", b"# -*- coding: latin-1 -*-\nname = '\xe9t\xe9'\neval(name)\n")

    assert scan_tree(tmp_path, IntakeLimits()) == ["latin.py:3:1 call to 'eval' is not allowed"]


def test_symlinks_in_a_tree_are_reported_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "evil.py", "import subprocess\n")
    root = tmp_path / "plugin"
    write(root, "manifest.py", "")
    os.symlink(outside, root / "linked_dir")
    os.symlink(outside / "evil.py", root / "linked.py")

    assert scan_tree(root, IntakeLimits()) == [
        "linked.py:1:1 symbolic link is not allowed",
        "linked_dir:1:1 symbolic link is not allowed",
    ]
