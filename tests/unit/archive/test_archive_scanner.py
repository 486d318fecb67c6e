"""Static security scan: baseline rules, aliases, allowed code, fail-closed parsing."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path

import pytest

from plughost.archive import (
    IntakeLimits,
    SecurityScanError,
    scan_source,
    scan_tree,
    scan_tree_isolated,
)
from plughost.archive.scanner import CHILD_SCRIPT


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


RUNTIME_API_IMPORTS = """\
from shared.plugins.inference.serve import BaseInferenceService, ServeDeploymentConfig
from shared.plugins.inference.batch import BaseBatchInferenceService
from shared.plugins import open_asset, download_asset
from shared.plugins.sdk import parallel_io, concurrent_api_calls
from shared.loggers.services import get_logger
from shared.models.loader import load_namespace_model
from shared.collection.features.extractors.models import ExtractorDefinition
from engine.plugins.extractors.pipeline import (
    PipelineDefinition, ResourceType, RowCondition, StepDefinition, build_pipeline_steps,
)
from engine.models.loader import load_namespace_model as engine_loader
from engine.models import load_namespace_model as engine_models_loader
import engine.plugins.extractors.pipeline as pipeline

logger = get_logger(__name__)

def fetch(url):
    with open_asset(url, ".jpg") as path:
        return download_asset(url, suffix=".jpg"), path, parallel_io(len, [path])
"""

ENGINE_PACKAGE = "plughost's 'engine' package (engine.plugins.extractors.pipeline)"


def test_every_runtime_api_import_is_accepted() -> None:
    assert scan_source("pipeline.py", RUNTIME_API_IMPORTS) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from shared.plugins.sdk import parallel_io\nimport threading\n",
            ["m.py:2:8 import of 'threading' is not allowed"],
        ),
        (
            (
                "from engine.plugins.extractors.pipeline import StepDefinition\n"
                "from plughost.runtime_api import RUNTIME_API_DIR\n"
            ),
            ["m.py:2:1 import of 'plughost.runtime_api' is not allowed"],
        ),
    ],
)
def test_dangerous_imports_beside_runtime_api_ones_are_still_refused(
    source: str, expected: list[str]
) -> None:
    assert scan_source("m.py", source) == expected


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
    ("name", "message"),
    [
        ("__pycache__/pipeline.cpython-311.pyc", "compiled Python bytecode cannot be scanned"),
        ("helper.pyc", "compiled Python bytecode cannot be scanned"),
        ("helper.PYO", "compiled Python bytecode cannot be scanned"),
        ("fast.so", "native code cannot be scanned"),
        ("fast.cpython-311-x86_64-linux-gnu.so", "native code cannot be scanned"),
        ("native.pyd", "native code cannot be scanned"),
        ("lib/helper.dylib", "native code cannot be scanned"),
        ("evil.pth", "path configuration files (.pth) are not allowed"),
        (
            "deps/thing-1.0-py3-none-any.whl",
            "packaged Python code (egg, wheel, zipapp) cannot be scanned",
        ),
        ("deps/thing.egg", "packaged Python code (egg, wheel, zipapp) cannot be scanned"),
        ("app.pyz", "packaged Python code (egg, wheel, zipapp) cannot be scanned"),
    ],
)
def test_files_python_acts_on_but_the_scanner_cannot_read_are_refused(
    tmp_path: Path, name: str, message: str
) -> None:
    write(tmp_path, name, b"\x00binary")

    assert scan_tree(tmp_path, IntakeLimits()) == [f"{name}:1:1 {message}"]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x7fELF\x02\x01\x01" + bytes(100), "ELF executable or library"),
        (b"\xcf\xfa\xed\xfe" + bytes(100), "Mach-O binary or Java class"),
        (
            b"MZ" + bytes(0x3A) + (0x40).to_bytes(4, "little") + b"PE\0\0" + bytes(64),
            "Windows PE executable",
        ),
    ],
)
def test_native_binaries_are_refused_whatever_their_name(
    tmp_path: Path, data: bytes, kind: str
) -> None:
    write(tmp_path, "weights.bin", data)

    findings = scan_tree(tmp_path, IntakeLimits())

    assert findings == [f"weights.bin:1:1 native code ({kind}) cannot be scanned"]


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_nested_zip_holding_python_is_refused_as_importable(tmp_path: Path) -> None:
    write(tmp_path, "data/lib.dat", zip_of({"evil/__init__.py": b"import os\nos.system('x')"}))

    assert scan_tree(tmp_path, IntakeLimits()) == [
        (
            "data/lib.dat:1:1 zip archive holding Python code ('evil/__init__.py') cannot be "
            "scanned; Python can import from it (zipimport)"
        )
    ]


@pytest.mark.parametrize(
    "name",
    [
        "weights.npz",
        "model.pt",
        "notes.txt",
        "config.json",
        "table.csv",
        "README.md",
        "model.safetensors",
        "arr.npy",
        "settings.yaml",
        "data.parquet",
    ],
)
def test_data_files_stay_allowed(tmp_path: Path, name: str) -> None:
    data = (
        zip_of({"arr_0.npy": b"\x93NUMPY" + bytes(50)})
        if name.endswith((".npz", ".pt"))
        else (b"\x93NUMPY\x01\x00" + bytes(64) if name.endswith(".npy") else b"import subprocess\n")
    )
    write(tmp_path, name, data)

    assert scan_tree(tmp_path, IntakeLimits()) == []


def test_source_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "latin.py", b"x = 1\nname = '\xe9t\xe9'\n")

    assert scan_tree(tmp_path, IntakeLimits()) == [
        "latin.py:2:1 file is not valid UTF-8 (invalid continuation byte at byte 14)"
    ]


@pytest.mark.parametrize(
    ("header", "line"),
    [
        (b"# -*- coding: utf_7 -*-\n", 1),
        (b"# coding=utf-7\n", 1),
        (b"#!/usr/bin/env python\n# -*- coding: latin-1 -*-\n", 2),
        (b"x = 1\n# vim: set fileencoding=cp1252 :\n", 2),
        (b"x = 1\r# coding: utf-16\r", 2),
        (b"\xef\xbb\xbf# coding: latin-1\n", 1),
    ],
)
def test_coding_declarations_other_than_utf8_are_refused(
    tmp_path: Path, header: bytes, line: int
) -> None:
    write(tmp_path, "enc.py", header + b"value = 1\n")

    findings = scan_tree(tmp_path, IntakeLimits())

    assert len(findings) == 1
    assert findings[0].startswith(f"enc.py:{line}:1 coding declaration ")
    assert findings[0].endswith("is not UTF-8; plugin source must be UTF-8")


def test_utf7_payload_hidden_from_a_naive_reader_is_refused(tmp_path: Path) -> None:
    # Decoded as UTF-7 this line reads: import os; os.system("id")
    payload = b"# coding: utf_7\n+AGkAbQBwAG8AcgB0ACAAbwBz-\n"
    write(tmp_path, "sneaky.py", payload)

    assert scan_tree(tmp_path, IntakeLimits()) == [
        "sneaky.py:1:1 coding declaration 'utf_7' is not UTF-8; plugin source must be UTF-8"
    ]


def test_unknown_coding_declaration_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "enc.py", b"# coding: klingon\n")

    assert scan_tree(tmp_path, IntakeLimits()) == [
        "enc.py:1:1 coding declaration names unknown encoding 'klingon'"
    ]


@pytest.mark.parametrize(
    "source",
    [
        b"# -*- coding: utf-8 -*-\nname = '\xc3\xa9t\xc3\xa9'\n",
        b"# coding: UTF8\n",
        b"\xef\xbb\xbfname = '\xc3\xa9'\n",
        b"\xef\xbb\xbf# coding: utf-8\n",
        b"x = 1\ny = 2\n# coding: latin-1 (line 3 is not a declaration)\n",
    ],
)
def test_utf8_sources_and_bom_are_accepted(tmp_path: Path, source: bytes) -> None:
    write(tmp_path, "ok.py", source)

    assert scan_tree(tmp_path, IntakeLimits()) == []


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("os.py", "", "os.py:1:1 module name 'os' shadows the standard-library module 'os'"),
        (
            "typing.py",
            "",
            "typing.py:1:1 module name 'typing' shadows the standard-library module 'typing'",
        ),
        (
            "json/__init__.py",
            "",
            "json/__init__.py:1:1 module name 'json' shadows the standard-library module 'json'",
        ),
        (
            "shared/__init__.py",
            "",
            (
                "shared/__init__.py:1:1 module name 'shared' shadows "
                "plughost's 'shared' package (shared.plugins.inference.serve)"
            ),
        ),
        (
            "engine/__init__.py",
            "",
            (
                "engine/__init__.py:1:1 module name 'engine' shadows "
                "plughost's 'engine' package (engine.plugins.extractors.pipeline)"
            ),
        ),
        ("engine.py", "", "engine.py:1:1 module name 'engine' shadows " + ENGINE_PACKAGE),
        ("plughost.py", "", "plughost.py:1:1 module name 'plughost' shadows the plughost package"),
        (
            "sitecustomize.py",
            "",
            (
                "sitecustomize.py:1:1 module name 'sitecustomize' shadows "
                "the interpreter's start-up hook"
            ),
        ),
    ],
)
def test_top_level_modules_shadowing_the_stdlib_or_the_host_are_refused(
    tmp_path: Path, name: str, data: str, expected: str
) -> None:
    write(tmp_path, name, data)

    assert scan_tree(tmp_path, IntakeLimits()) == [expected]


@pytest.mark.parametrize(
    "name",
    [
        "processors/json.py",
        "processors/types.py",
        "json/data.txt",
        "shared/readme.md",
        "engine/notes.txt",
        "OS.py",
        "os.txt",
        "typing_extras.py",
    ],
)
def test_names_that_cannot_shadow_are_allowed(tmp_path: Path, name: str) -> None:
    write(tmp_path, name, "")
    if name.startswith("processors/"):
        write(tmp_path, "processors/__init__.py", "")

    assert scan_tree(tmp_path, IntakeLimits()) == []


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


# --- escapes beyond the baseline -------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # modules reached through other modules
        (
            "import os\nos.path.os.system('x')",
            ["m.py:2:1 call to 'os.path.os.system' is not allowed (it is 'os.system')"],
        ),
        (
            "from shutil import os as o\no.system('x')",
            ["m.py:2:1 call to 'shutil.os.system' is not allowed (it is 'os.system')"],
        ),
        (
            "import logging\nlogging.threading.Thread",
            ["m.py:2:1 use of 'logging.threading' is not allowed (it is 'threading')"],
        ),
        (
            "import torch\ntorch.multiprocessing.spawn(f)",
            ["m.py:2:1 use of 'torch.multiprocessing' is not allowed (it is 'multiprocessing')"],
        ),
        # the import machinery and code held in strings
        ("import sys\nsys.modules['os']", ["m.py:2:1 use of 'sys.modules' is not allowed"]),
        ("from sys import modules", ["m.py:1:17 import of 'sys.modules' is not allowed"]),
        (
            "import sys\nsys.breakpointhook()",
            ["m.py:2:1 call to 'sys.breakpointhook' is not allowed"],
        ),
        ("import code", ["m.py:1:8 import of 'code' is not allowed"]),
        ("import timeit", ["m.py:1:8 import of 'timeit' is not allowed"]),
        ("import runpy", ["m.py:1:8 import of 'runpy' is not allowed"]),
        ("from pkgutil import resolve_name", ["m.py:1:1 import of 'pkgutil' is not allowed"]),
        ("import pydoc", ["m.py:1:8 import of 'pydoc' is not allowed"]),
        ("import importlib.metadata", ["m.py:1:8 import of 'importlib.metadata' is not allowed"]),
        ("import logging.config", ["m.py:1:8 import of 'logging.config' is not allowed"]),
        ("import gc", ["m.py:1:8 import of 'gc' is not allowed"]),
        ("import plughost.config", ["m.py:1:8 import of 'plughost.config' is not allowed"]),
        ("import types\ntypes.CodeType(*a)", ["m.py:2:1 call to 'types.CodeType' is not allowed"]),
        ("help(len)", ["m.py:1:1 call to 'help' is not allowed"]),
        (
            "from concurrent.futures import ProcessPoolExecutor",
            ["m.py:1:32 import of 'concurrent.futures.ProcessPoolExecutor' is not allowed"],
        ),
        (
            "async def f(loop):\n    await loop.subprocess_exec(p, 'sh')",
            ["m.py:2:11 access to attribute 'subprocess_exec' is not allowed"],
        ),
        # decorators are calls
        ("@eval\ndef f(): pass", ["m.py:1:2 call to 'eval' is not allowed"]),
        ("import os\n@os.system\ndef f(): pass", ["m.py:2:2 call to 'os.system' is not allowed"]),
        ("@breakpoint\nclass C: pass", ["m.py:1:2 call to 'breakpoint' is not allowed"]),
        # computed attribute names
        (
            "import os\ngetattr(os, 'sys' + 'tem')('id')",
            ["m.py:2:1 getattr() with a computed attribute name on module 'os' is not allowed"],
        ),
        (
            "from os import path\nsetattr(path, name, 1)",
            [
                "m.py:2:1 setattr() with a computed attribute name on module 'os.path' is not allowed"
            ],
        ),
        (
            "import os\ngetattr(*(os, 'system'))",
            ["m.py:2:1 getattr() with unpacked arguments is not allowed"],
        ),
        (
            "import os\nfetch = getattr\nfetch(os, 'system')",
            ["m.py:2:9 use of 'getattr' other than a direct call is not allowed"],
        ),
        (
            "import operator, os\noperator.attrgetter('system')(os)",
            ["m.py:2:1 operator.attrgetter('system') is not allowed"],
        ),
        (
            "import operator\noperator.methodcaller(name)(x)",
            ["m.py:2:1 operator.methodcaller() with a computed name is not allowed"],
        ),
        # namespaces
        (
            "import os\nos.__dict__['system']('x')",
            ["m.py:2:1 access to '__dict__' of module 'os' is not allowed"],
        ),
        ("import os\nvars(os)['system']", ["m.py:2:1 vars() of module 'os' is not allowed"]),
        (
            "globals()[name]",
            [
                (
                    "m.py:1:1 globals() is allowed only to read or set a constant key "
                    "(as in globals()['NAME'])"
                )
            ],
        ),
        (
            "ns = locals()",
            [
                (
                    "m.py:1:6 locals() is allowed only to read or set a constant key "
                    "(as in locals()['NAME'])"
                )
            ],
        ),
        ("globals()['__builtins__']", ["m.py:1:11 string naming '__builtins__' is not allowed"]),
        # dunder introspection
        ("len.__self__.eval('1')", ["m.py:1:1 access to attribute '__self__' is not allowed"]),
        ("f.__code__", ["m.py:1:1 access to attribute '__code__' is not allowed"]),
        ("f.__closure__", ["m.py:1:1 access to attribute '__closure__' is not allowed"]),
        ("m.__loader__", ["m.py:1:1 access to attribute '__loader__' is not allowed"]),
        (
            "object.__getattribute__(os, n)",
            ["m.py:1:1 access to attribute '__getattribute__' is not allowed"],
        ),
        ("x.__reduce_ex__(2)", ["m.py:1:1 access to attribute '__reduce_ex__' is not allowed"]),
        ("__loader__.get_data('/etc/passwd')", ["m.py:1:1 use of '__loader__' is not allowed"]),
        ("__build_class__", ["m.py:1:1 use of '__build_class__' is not allowed"]),
        ("getattr(f, '__code__')", ["m.py:1:1 access to attribute '__code__' is not allowed"]),
        (
            "e.__traceback__.tb_frame.f_back.f_globals",
            [
                "m.py:1:1 access to attribute '__traceback__' is not allowed",
                "m.py:1:1 access to attribute 'f_back' is not allowed",
                "m.py:1:1 access to attribute 'f_globals' is not allowed",
                "m.py:1:1 access to attribute 'tb_frame' is not allowed",
            ],
        ),
        (
            "'{0.__init__.__globals__[KEY]}'.format(obj)",
            ["m.py:1:1 string naming '__globals__' is not allowed"],
        ),
        (
            "x = '__sub' + 'classes__'",
            ["m.py:1:5 building a dunder name from string pieces is not allowed"],
        ),
        (
            "x = '_' + '_globals__'",
            ["m.py:1:5 building a dunder name from string pieces is not allowed"],
        ),
        (
            "x = f'__{name}__'",
            ["m.py:1:5 building a dunder name from string pieces is not allowed"],
        ),
    ],
)
def test_escapes_beyond_the_baseline_are_reported(source: str, expected: list[str]) -> None:
    assert scan_source("m.py", source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "class A(Base):\n    def __init__(self, **kw):\n        super().__init__(**kw)\n",
        "def f(self):\n    return self.__class__.__name__, type(self).__qualname__",
        "if __name__ == '__main__':\n    main()",
        "import os\nHERE = os.path.dirname(os.path.abspath(__file__))",
        "import numpy as np\nprint(np.__version__)",
        "def f(self):\n    self.__dict__.update(x=1)\n    return vars(self)['x']",
        "object.__setattr__(self, 'x', 1)",
        "getattr(self, 'handle_' + kind)()",
        "getattr(self._model, 'encode', None)",
        "import numpy as np\ndtype = getattr(np, 'float32')",
        "name = '__init__.py'\npath = root + '/__init__.py'",
        "label = f'{a}_{b}'\nkey = 'a__b'",
        "def f():\n    '''Never touches __globals__.'''\n",
        "CONFIG = globals()['DEFAULTS']",
        "import opentelemetry.trace\nopentelemetry.trace.get_tracer('x')",
        "from typing import get_args\nargs = T.__args__",
        "import functools\n@functools.lru_cache(maxsize=1)\ndef f(): pass",
        "import operator\nkey = operator.attrgetter('score')",
        "import math\nwith ctx as c:\n    c.__enter__",
    ],
)
def test_ordinary_plugin_code_passes(source: str) -> None:
    assert scan_source("m.py", source) == []


# --- the isolated scan -----------------------------------------------------------------


def test_isolated_scan_reports_what_the_in_process_scan_reports(tmp_path: Path) -> None:
    write(tmp_path, "manifest.py", "import os\nos.system('x')\n")
    write(tmp_path, "os.py", "")
    write(tmp_path, "lib.so", b"\x7fELF")

    assert scan_tree_isolated(tmp_path, IntakeLimits()) == scan_tree(tmp_path, IntakeLimits())
    assert scan_tree_isolated(tmp_path, IntakeLimits()) == [
        "lib.so:1:1 native code cannot be scanned",
        "manifest.py:2:1 call to 'os.system' is not allowed",
        "os.py:1:1 module name 'os' shadows the standard-library module 'os'",
    ]


def test_isolated_scan_of_a_clean_tree_is_empty(tmp_path: Path) -> None:
    write(tmp_path, "manifest.py", "name = 'x'\n")

    assert scan_tree_isolated(tmp_path, IntakeLimits()) == []


def test_parser_memory_bomb_is_contained_by_the_child_limit(tmp_path: Path) -> None:
    # ~1.2 MB of subscripts: about 500 MB for the parser, above a 300 MB address space.
    write(tmp_path, "bomb.py", "x" + "[0]" * 400_000 + "\n")
    limits = IntakeLimits(scan_memory_bytes=300 * 1024 * 1024)

    findings = scan_tree_isolated(tmp_path, limits)

    assert len(findings) == 1
    assert findings[0].startswith("bomb.py:1:1 cannot be parsed: ")


def test_crashed_scan_names_the_file_it_was_reading(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "x = 1\n")
    script = tmp_path / "crash.py"
    script.write_text(
        "import os, sys\n"
        "sys.stderr.write(\"while scanning 'a.py'\\n\"); sys.stderr.flush()\n"
        "os.kill(os.getpid(), 11)\n"
    )

    def command(_script: Path, root: Path) -> list[str]:
        return [sys.executable, str(script), str(root)]

    with pytest.raises(SecurityScanError) as caught:
        scan_tree_isolated(tmp_path, IntakeLimits(manifest_command=command))

    assert caught.value.errors == [
        "security scan stopped without a result (killed by SIGSEGV): while scanning 'a.py'"
    ]


def test_scan_that_runs_too_long_is_stopped(tmp_path: Path) -> None:
    def command(_script: Path, _root: Path) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(30)"]

    limits = IntakeLimits(manifest_command=command, scan_timeout_s=1.0)
    with pytest.raises(SecurityScanError) as caught:
        scan_tree_isolated(tmp_path, limits)

    assert caught.value.errors == ["the security scan did not finish within 1 s"]


def test_isolated_scan_goes_through_the_sandbox_hook(tmp_path: Path) -> None:
    write(tmp_path, "manifest.py", "eval('1')\n")
    seen: list[tuple[Path, Path]] = []

    def command(script: Path, root: Path) -> list[str]:
        seen.append((script, root))
        return [sys.executable, "-I", "-B", str(script), str(root)]

    findings = scan_tree_isolated(tmp_path, IntakeLimits(manifest_command=command))

    assert findings == ["manifest.py:1:1 call to 'eval' is not allowed"]
    assert seen == [(CHILD_SCRIPT, tmp_path.resolve())]
