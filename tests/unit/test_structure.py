"""The shape the code keeps: modules a reader can hold (at most 400 lines, migrations aside)
and packages without import circles at module level (imports under ``TYPE_CHECKING`` and
inside functions are not edges: they do not run when the module loads)."""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "plughost"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def test_no_module_outside_the_migrations_is_longer_than_400_lines() -> None:
    long = {
        name: n
        for name, path in MODULES.items()
        if ".migrations." not in name
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them): {long}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time_imports(name: str, tree: ast.Module) -> set[str]:
    """The plughost modules ``name`` imports while it loads."""
    out: set[str] = set()
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)  # a submodule, if it is one
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])

    visit(tree.body)
    return {m for m in out if m in MODULES and m != name}


def test_the_package_has_no_import_circle_at_module_level() -> None:
    graph = {
        name: _load_time_imports(name, ast.parse(path.read_text(encoding="utf-8")))
        for name, path in MODULES.items()
    }
    # an import of a.b.c loads a and a.b first: a package's __init__ is an edge too
    for name, edges in graph.items():
        for target in list(edges):
            parts = target.split(".")
            edges.update(p for i in range(2, len(parts)) if (p := ".".join(parts[:i])) in MODULES)
        edges.discard(name)
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)
    # a package's __init__ importing its own submodules is how packages export names, and
    # the submodule importing a sibling through the package is then the usual cycle Python
    # resolves; those are not the circles meant here
    real = [c for c in circles if not _through_own_package(c)]
    assert not real, "import circles:\n" + "\n".join(" -> ".join(c) for c in real[:10])


def _through_own_package(circle: list[str]) -> bool:
    return any(
        b.startswith(a + ".") or a.startswith(b + ".") for a, b in pairwise(circle)
    )
