"""Static security scan of plugin sources.

Each finding is a string ``<path>:<line>:<col> <message>``:

* ``path`` is the file's POSIX path relative to the scanned root (or the label given);
* ``line`` is 1-based;
* ``col`` is the AST ``col_offset + 1``: a 1-based column counted in UTF-8 *bytes*, which
  equals the character column for ASCII lines (syntax errors use Python's own 1-based
  character offset);
* problems with a whole file (unreadable, too large, compiled code, a shadowing module name)
  are reported at ``1:1``, an encoding problem at its line.

Findings are sorted by path, line, column, message. The scan fails closed: a file that cannot
be decoded or parsed is a finding, and so is any file the scanner cannot read as plugin source
(compiled or native code, ``.pth`` files, packaged code, zip files holding Python modules),
a ``.py`` file that is not UTF-8 or declares another encoding, and a top-level module named
like a standard-library module or one of the host's (``shared``, ``plughost``).

Parsing is memory-hungry (a 2 MB file of nested calls takes the parser past 600 MB), so
intake runs the scan with :func:`scan_tree_isolated`: a ``python -I`` child limited in address
space and wall-clock time, started through the same command builder as the manifest reader.
:func:`scan_tree` and :func:`scan_source` run the same code in-process, for tests and tools.

The rules live in :mod:`plughost.archive.rules` and :mod:`plughost.archive._checker`. This
scan is a floor, not a sandbox: code that computes what it calls at run time can still escape
it, so the runtime must not rely on it alone.
"""

from __future__ import annotations

from pathlib import Path

from plughost.archive._checker import Finding
from plughost.archive._child import ChildLabels, child_argv, child_environment, run_json_child
from plughost.archive._scan_child import scan_text
from plughost.archive._scan_child import scan_tree as _scan_tree
from plughost.archive.errors import SecurityScanError
from plughost.archive.limits import IntakeLimits

CHILD_SCRIPT = Path(__file__).with_name("_scan_child.py")
_LABELS = ChildLabels(
    subject="the security scan", output="security scan output", reader="security scan"
)

__all__ = ["CHILD_SCRIPT", "Finding", "scan_source", "scan_tree", "scan_tree_isolated"]


def scan_source(path_label: str, source: str) -> list[str]:
    """Scan one module's source text; return its findings, sorted, labelled ``path_label``."""
    return [str(finding) for finding in sorted(scan_text(path_label, source))]


def scan_tree(root: Path, limits: IntakeLimits) -> list[str]:
    """Scan every file under ``root`` in this process; return the sorted findings.

    Symbolic links are reported, never followed. An empty list means the tree passed.
    """
    return [str(finding) for finding in _scan_tree(root, limits.max_py_file_bytes)]


def scan_tree_isolated(
    root: Path, limits: IntakeLimits, model_refs: set[str] | None = None
) -> list[str]:
    """Like :func:`scan_tree`, in a child process bounded by ``limits.scan_memory_bytes``
    and ``limits.scan_timeout_s``; ``model_refs``, when given, receives the namespace model
    ids the code names (:mod:`plughost.archive._model_refs`).

    Raises SecurityScanError when the child does not report a result (time-out, crash).
    """
    root = root.resolve()
    argv = child_argv(
        CHILD_SCRIPT,
        root,
        limits,
        str(limits.max_py_file_bytes),
        str(limits.scan_memory_bytes),
    )
    result = run_json_child(
        argv,
        cwd=root,
        env=child_environment(),
        timeout_s=limits.scan_timeout_s,
        labels=_LABELS,
        error=SecurityScanError,
    )
    findings = result.get("findings")
    if not result.get("ok") or not isinstance(findings, list):
        raise SecurityScanError([str(result.get("error") or "security scan returned no result")])
    refs = result.get("model_refs")
    if model_refs is not None and isinstance(refs, list):
        model_refs.update(str(ref) for ref in refs)
    return [str(finding) for finding in findings]
