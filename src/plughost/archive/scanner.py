"""Static AST security scan of plugin sources.

Each finding is a string ``<path>:<line>:<col> <message>``:

* ``path`` is the file's POSIX path relative to the scanned root (or the label given);
* ``line`` is 1-based;
* ``col`` is the AST ``col_offset + 1``: a 1-based column counted in UTF-8 *bytes*, which
  equals the character column for ASCII lines (syntax errors use Python's own 1-based
  character offset);
* problems with a whole file (unreadable, too large, compiled code) are reported at ``1:1``.

Findings are sorted by path, line, column, message. A file that cannot be decoded or parsed
is a finding: the scan fails closed.

Rules live in :mod:`plughost.archive.rules`. Names are resolved through simple aliases
(``import os as o``, ``from os import popen as p``, ``o2 = o``) so ``o.system()`` counts as
``os.system``. Blocked functions are flagged when referenced, not only when called, since
``f = eval; f(x)`` is the same call. This scan is a floor, not a sandbox: computed names
(``getattr(os, "sys" + "tem")``) escape it, and the runtime must not rely on it alone.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import decode_source
from pathlib import Path

from plughost.archive.limits import IntakeLimits
from plughost.archive.rules import (
    BLOCKED_ATTRIBUTES,
    UNSCANNABLE_SUFFIXES,
    exposes_blocked_names,
    is_blocked_call,
    is_blocked_module,
)

_MAX_ALIAS_ROUNDS = 8
_ATTRIBUTE_GETTERS = frozenset({"getattr", "setattr", "delattr"})


@dataclass(frozen=True, order=True)
class Finding:
    """One rule violation at a position in a file."""

    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col} {self.message}"


def scan_source(path_label: str, source: str) -> list[str]:
    """Scan one module's source text; return its findings, sorted, labelled ``path_label``."""
    return [str(finding) for finding in sorted(_scan_text(path_label, source))]


def scan_tree(root: Path, limits: IntakeLimits) -> list[str]:
    """Scan every file under ``root`` (symbolic links are not followed but reported).

    ``.py`` files are parsed and checked (refused above ``limits.max_py_file_bytes``);
    compiled or native modules are refused because they cannot be read. Returns the sorted
    findings; an empty list means the tree passed.
    """
    findings: list[Finding] = []
    for path in _walk(root):
        label = path.relative_to(root).as_posix()
        findings.extend(_scan_file(path, label, limits))
    return [str(finding) for finding in sorted(findings)]


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        base = Path(folder)
        links = [name for name in dirs if (base / name).is_symlink()]
        yield from (base / name for name in sorted(files + links))


def _scan_file(path: Path, label: str, limits: IntakeLimits) -> list[Finding]:
    lowered = path.name.lower()
    if path.is_symlink():
        return [Finding(label, 1, 1, "symbolic link is not allowed")]
    if lowered.endswith(UNSCANNABLE_SUFFIXES):
        return [Finding(label, 1, 1, "compiled or native code cannot be scanned")]
    if not lowered.endswith(".py"):
        return []
    size = path.stat().st_size
    if size > limits.max_py_file_bytes:
        return [
            Finding(
                label,
                1,
                1,
                f"file is {size} bytes, above the limit of {limits.max_py_file_bytes} "
                "bytes for a .py file",
            )
        ]
    try:
        source = decode_source(path.read_bytes())
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        return [Finding(label, 1, 1, f"cannot decode source: {exc}")]
    return _scan_text(label, source)


def _scan_text(label: str, source: str) -> list[Finding]:
    try:
        tree = ast.parse(source, filename=label)
    except SyntaxError as exc:
        return [Finding(label, exc.lineno or 1, exc.offset or 1, f"syntax error: {exc.msg}")]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [Finding(label, 1, 1, f"cannot be parsed: {exc}")]
    return _Checker(label, tree).run()


class _Checker:
    """Applies the rule tables to one parsed module."""

    def __init__(self, label: str, tree: ast.Module) -> None:
        self._label = label
        self._nodes = list(ast.walk(tree))
        self._aliases: dict[str, str] = {}
        self._called: set[int] = set()
        self._findings: list[Finding] = []

    def run(self) -> list[Finding]:
        """Return every finding in the module, unsorted."""
        self._collect_aliases()
        self._called = {id(node.func) for node in self._nodes if isinstance(node, ast.Call)}
        for node in self._nodes:
            if isinstance(node, ast.Import):
                self._check_import(node)
            elif isinstance(node, ast.ImportFrom):
                self._check_import_from(node)
            elif isinstance(node, ast.Name):
                self._check_name(node)
            elif isinstance(node, ast.Attribute):
                self._check_attribute(node)
            elif isinstance(node, ast.Call):
                self._check_attribute_getter(node)
        return self._findings

    def _collect_aliases(self) -> None:
        for node in self._nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self._aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.partition(".")[0]
                        self._aliases[top] = top
            elif isinstance(node, ast.ImportFrom):
                # Relative imports name the plugin's own modules, never the standard library.
                module = "." * node.level + (node.module or "")
                for alias in node.names:
                    if alias.name != "*":
                        self._aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
        for _ in range(_MAX_ALIAS_ROUNDS):
            if not self._collect_assigned_aliases():
                break

    def _collect_assigned_aliases(self) -> bool:
        """Follow ``name = known.dotted.name`` assignments; True if any alias was added."""
        changed = False
        for node in self._nodes:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                continue
            target = node.targets[0]
            if not isinstance(target, ast.Name) or not _is_dotted(node.value):
                continue
            root = _root_name(node.value)
            resolved = self._qualify(node.value)
            if root in self._aliases and resolved and self._aliases.get(target.id) != resolved:
                self._aliases[target.id] = resolved
                changed = True
        return changed

    def _qualify(self, node: ast.expr) -> str | None:
        """Fully qualified dotted name of a ``Name``/``Attribute`` chain, else None."""
        attributes: list[str] = []
        while isinstance(node, ast.Attribute):
            attributes.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        base = self._aliases.get(node.id, node.id)
        return ".".join([base, *reversed(attributes)])

    def _add(self, node: ast.AST, message: str) -> None:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0) + 1
        self._findings.append(Finding(self._label, line, col, message))

    def _check_import(self, node: ast.Import) -> None:
        for alias in node.names:
            if is_blocked_module(alias.name):
                self._add(alias, f"import of '{alias.name}' is not allowed")

    def _check_import_from(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return
        if is_blocked_module(node.module):
            self._add(node, f"import of '{node.module}' is not allowed")
            return
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            if alias.name == "*" and exposes_blocked_names(node.module):
                self._add(alias, f"star import from '{node.module}' is not allowed")
            elif is_blocked_module(full) or is_blocked_call(full):
                self._add(alias, f"import of '{full}' is not allowed")

    def _check_name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load):
            return
        if node.id in BLOCKED_ATTRIBUTES:
            self._add(node, f"use of '{node.id}' is not allowed")
            return
        self._check_qualified(node)

    def _check_attribute(self, node: ast.Attribute) -> None:
        if node.attr in BLOCKED_ATTRIBUTES:
            self._add(node, f"access to attribute '{node.attr}' is not allowed")
            return
        self._check_qualified(node)

    def _check_qualified(self, node: ast.Name | ast.Attribute) -> None:
        qualified = self._qualify(node)
        if qualified and is_blocked_call(qualified):
            verb = "call to" if id(node) in self._called else "use of"
            self._add(node, f"{verb} '{qualified}' is not allowed")

    def _check_attribute_getter(self, node: ast.Call) -> None:
        """``getattr(os, "system")`` reaches ``os.system`` just as ``os.system`` does."""
        if self._qualify(node.func) not in _ATTRIBUTE_GETTERS or len(node.args) < 2:
            return
        name = node.args[1]
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            return
        if name.value in BLOCKED_ATTRIBUTES:
            self._add(node, f"access to attribute '{name.value}' is not allowed")
            return
        owner = self._qualify(node.args[0])
        if owner and is_blocked_call(f"{owner}.{name.value}"):
            self._add(node, f"use of '{owner}.{name.value}' is not allowed")


def _is_dotted(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _root_name(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""
