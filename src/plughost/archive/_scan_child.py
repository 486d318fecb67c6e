"""The static security scan of a plugin tree, and the child process that runs it.

Run as ``python -I -B _scan_child.py <plugin_root> <max_py_bytes> <memory_bytes>``, the
module first lowers its own limits (address space to ``memory_bytes``, no core dumps, no file
writes), then scans and writes exactly one JSON object to its private standard output:
``{"ok": true, "findings": ["file:line:col message", ...]}`` or ``{"ok": false, "error": str}``.
Before parsing each file it names the file on stderr, so a crash it cannot report (a parser
stack overflow, say) still tells the parent which file caused it.

Standard library only, besides its siblings ``rules`` and ``_checker``: run by path, it puts
its own folder at the end of ``sys.path`` and imports them without the plughost package.
:mod:`plughost.archive.scanner` imports the same code in-process for unit tests.
"""

from __future__ import annotations

import ast
import codecs
import json
import os
import re
import stat
import sys
import zipfile
import zipimport
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

if __package__:
    from plughost.archive import rules
    from plughost.archive._checker import Finding, check_module
    from plughost.archive._model_refs import model_refs
else:  # run by path in a clean interpreter
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    import rules  # type: ignore[no-redef,import-not-found]
    from _checker import Finding, check_module  # type: ignore[no-redef,import-not-found,unused-ignore]
    from _model_refs import model_refs  # type: ignore[no-redef,import-not-found,unused-ignore]

# the namespace model ids the scanned code names (plughost.archive._model_refs), reported
# beside the findings
MODEL_REFS: set[str] = set()

MAX_FINDINGS = 200
"""A scan reports at most this many findings, then how many more it found."""

_HEAD_BYTES = 64
_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.ASCII)
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_UTF8_NAMES = frozenset({"utf-8", "utf-8-sig"})
_MACHO_MAGICS = frozenset(
    {
        b"\xfe\xed\xfa\xce",
        b"\xfe\xed\xfa\xcf",
        b"\xce\xfa\xed\xfe",
        b"\xcf\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe",
        b"\xca\xfe\xba\xbf",
        b"\xbe\xba\xfe\xca",
    }
)
_ZIP_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipimport.ZipImportError,
    zipfile.BadZipFile,
    OSError,
    ValueError,
    EOFError,
    NotImplementedError,
)

Progress = Callable[[str], None]


class SourceProblem(Exception):
    """A ``.py`` file that cannot be read as UTF-8 plugin source; ``line`` locates it."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line


# --- whole trees -----------------------------------------------------------------------


def scan_tree(root: Path, max_py_bytes: int, progress: Progress | None = None) -> list[Finding]:
    """Every finding under ``root``, sorted: module names, file kinds, sizes, then code."""
    findings = shadowing_findings(root)
    for path in _walk(root):
        label = path.relative_to(root).as_posix()
        findings.extend(scan_file(path, label, max_py_bytes, progress))
    return sorted(findings)


def shadowing_findings(root: Path) -> list[Finding]:
    """Top-level modules whose names shadow the standard library or the host.

    The plugin root is first on ``sys.path`` in every process that loads the plugin, so a
    root-level ``json.py`` or ``json/__init__.py`` would replace the standard library's
    ``json`` for the host code running there too. Folders below the root are packages of the
    plugin (``processors/json.py`` is ``processors.json``) and are not checked.
    """
    findings: list[Finding] = []
    for child in sorted(root.iterdir(), key=lambda entry: entry.name):
        if child.is_symlink():
            continue
        if child.is_file() and child.name.endswith(".py"):
            module, label = child.name[:-3], child.name
        elif child.is_dir() and (child / "__init__.py").is_file():
            module, label = child.name, f"{child.name}/__init__.py"
        else:
            continue
        problem = _shadow_problem(module)
        if problem:
            findings.append(Finding(label, 1, 1, problem))
    return findings


def _shadow_problem(module: str) -> str | None:
    if module in sys.stdlib_module_names:
        return f"module name '{module}' shadows the standard-library module '{module}'"
    if module in rules.RESERVED_MODULES:
        return f"module name '{module}' shadows {rules.RESERVED_MODULES[module]}"
    return None


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        base = Path(folder)
        links = [name for name in dirs if (base / name).is_symlink()]
        yield from (base / name for name in sorted(files + links))


# --- single files ----------------------------------------------------------------------


def scan_file(
    path: Path, label: str, max_py_bytes: int, progress: Progress | None = None
) -> list[Finding]:
    """Findings for one file: its kind (by name and content), then its code if Python."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return [Finding(label, 1, 1, "symbolic link is not allowed")]
    if not stat.S_ISREG(info.st_mode):
        return [Finding(label, 1, 1, "only regular files and folders are allowed")]
    problem = suffix_problem(path.name)
    if problem is None:
        problem = content_problem(path)
    if problem:
        return [Finding(label, 1, 1, problem)]
    if not path.name.lower().endswith(".py"):
        return []
    if info.st_size > max_py_bytes:
        message = (
            f"file is {info.st_size} bytes, above the limit of {max_py_bytes} bytes for a .py file"
        )
        return [Finding(label, 1, 1, message)]
    try:
        source = decode_source(path.read_bytes())
    except SourceProblem as exc:
        return [Finding(label, exc.line, 1, str(exc))]
    if progress is not None:
        progress(label)
    return scan_text(label, source)


def suffix_problem(name: str) -> str | None:
    """Why a file name is refused whatever its content, or None."""
    lowered = name.lower()
    if lowered.endswith(rules.COMPILED_SUFFIXES):
        return "compiled Python bytecode cannot be scanned"
    if lowered.endswith(rules.NATIVE_SUFFIXES):
        return "native code cannot be scanned"
    if lowered.endswith(rules.PACKAGE_ARCHIVE_SUFFIXES):
        return "packaged Python code (egg, wheel, zipapp) cannot be scanned"
    if lowered.endswith(rules.PATH_CONFIG_SUFFIXES):
        return "path configuration files (.pth) are not allowed"
    return None


def content_problem(path: Path) -> str | None:
    """Why a file's bytes are refused (executables, zips Python can import from), or None."""
    with path.open("rb") as stream:
        head = stream.read(_HEAD_BYTES)
        if head.startswith(b"\x7fELF"):
            return "native code (ELF executable or library) cannot be scanned"
        if head[:4] in _MACHO_MAGICS:
            return "native code (Mach-O binary or Java class) cannot be scanned"
        if head.startswith(b"MZ") and _is_pe(stream):
            return "native code (Windows PE executable) cannot be scanned"
    names = _zip_member_names(path)
    importable = [name for name in names if name.lower().endswith(rules.IMPORTABLE_SUFFIXES)]
    if importable:
        return (
            f"zip archive holding Python code ('{importable[0]}') cannot be scanned; "
            "Python can import from it (zipimport)"
        )
    return None


def _is_pe(stream: BinaryIO) -> bool:
    """True when the PE signature sits where the DOS header's ``e_lfanew`` points."""
    stream.seek(0x3C)
    pointer = stream.read(4)
    if len(pointer) != 4:
        return False
    stream.seek(int.from_bytes(pointer, "little"))
    return bool(stream.read(4) == b"PE\0\0")


def _zip_member_names(path: Path) -> list[str]:
    """Member names as both ``zipimport`` and ``zipfile`` read them; empty if neither can."""
    if not zipfile.is_zipfile(path):
        return []
    names: list[str] = []
    try:
        importer = zipimport.zipimporter(str(path))
        names.extend(str(name) for name in getattr(importer, "_files", {}))
    except _ZIP_READ_ERRORS:
        pass
    try:
        with zipfile.ZipFile(path) as archive:
            names.extend(archive.namelist())
    except _ZIP_READ_ERRORS:
        pass
    return names


def decode_source(data: bytes) -> str:
    """Decode a ``.py`` file as Python would, accepting only UTF-8 (with or without BOM).

    A coding declaration (PEP 263) on line 1 or 2 naming any other encoding is refused,
    whatever line 1 holds: a stricter reading than the interpreter's, never a looser one.
    """
    body = data.removeprefix(codecs.BOM_UTF8)
    for number, line in enumerate(_LINE_BREAK.split(body, maxsplit=2)[:2], start=1):
        match = _COOKIE.match(line)
        if match:
            _require_utf8(match.group(1).decode("ascii"), number)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        message = f"file is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        raise SourceProblem(message, line) from None


def _require_utf8(declared: str, line: int) -> None:
    try:
        name = codecs.lookup(declared).name
    except LookupError:
        message = f"coding declaration names unknown encoding '{declared}'"
        raise SourceProblem(message, line) from None
    if name not in _UTF8_NAMES:
        raise SourceProblem(
            f"coding declaration '{declared}' is not UTF-8; plugin source must be UTF-8", line
        )


def scan_text(label: str, source: str) -> list[Finding]:
    """Parse one module's text and apply the AST rules; a parse failure is a finding."""
    try:
        tree = ast.parse(source, filename=label)
    except SyntaxError as exc:
        return [Finding(label, exc.lineno or 1, exc.offset or 1, f"syntax error: {exc.msg}")]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [Finding(label, 1, 1, f"cannot be parsed: {_describe(exc)}")]
    try:
        MODEL_REFS.update(model_refs(tree))
        return check_module(label, tree)
    except (RecursionError, MemoryError) as exc:
        return [Finding(label, 1, 1, f"cannot be checked: {_describe(exc)}")]


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# --- the child process -----------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Entry point; always writes one result object and returns 0."""
    result_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        root, max_py_bytes, memory_bytes = Path(argv[1]), int(argv[2]), int(argv[3])
        _limit_resources(memory_bytes)
        findings = [str(finding) for finding in scan_tree(root, max_py_bytes, _announce)]
        if len(findings) > MAX_FINDINGS:
            hidden = len(findings) - MAX_FINDINGS
            findings = [*findings[:MAX_FINDINGS], f"... and {hidden} more findings"]
        result: dict[str, object] = {
            "ok": True,
            "findings": findings,
            "model_refs": sorted(MODEL_REFS),
        }
    except BaseException as exc:  # noqa: BLE001 - report anything, the parent fails closed
        result = {"ok": False, "error": f"security scan failed: {_describe(exc)}"}
    payload = json.dumps(result, ensure_ascii=True) + "\n"
    view = memoryview(payload.encode("ascii"))
    while view:
        view = view[os.write(result_fd, view) :]
    os.close(result_fd)
    return 0


def _limit_resources(memory_bytes: int) -> None:
    import resource

    for limit, value in (
        (resource.RLIMIT_AS, memory_bytes),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_FSIZE, 0),
    ):
        _soft, hard = resource.getrlimit(limit)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(limit, (value, value))


def _announce(label: str) -> None:
    sys.stderr.write(f"while scanning {label!r}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    os._exit(main(sys.argv))
