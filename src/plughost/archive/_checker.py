"""The AST rules applied to one parsed plugin module; see :mod:`plughost.archive.scanner`.

Standard library only (plus the rule tables): the scan child imports it by path, outside
the plughost package.

Names are resolved through simple aliases (``import os as o``, ``from os import popen as p``,
``o2 = o``) so ``o.system()`` counts as ``os.system``. Blocked functions are flagged when
referenced, not only when called, since ``f = eval; f(x)`` is the same call; a decorator is a
call. A chain of attributes that starts at an imported name is checked at every step, so
``shutil.os.system`` is ``os.system``. Unsafe dunder names (see
:data:`~plughost.archive.rules.SAFE_DUNDER_NAMES`) are refused as attributes, bare names,
constant ``getattr`` names and inside strings, and a dunder name built from string pieces is
refused too. ``getattr``/``setattr``/``delattr`` with a computed name are refused on imported
names; ``globals()``/``locals()``/``vars()`` may only read a constant key.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

if __package__:
    from plughost.archive import rules
else:  # imported by the scan child, which runs by path with this folder on sys.path
    import rules  # type: ignore[no-redef,import-not-found]

_MAX_ALIAS_ROUNDS = 8
_SAFE_DUNDER = re.compile(
    "|".join(re.escape(name) for name in sorted(rules.SAFE_DUNDER_NAMES, key=len, reverse=True))
)


@dataclass(frozen=True, order=True)
class Finding:
    """One rule violation at a position in a file."""

    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col} {self.message}"


def check_module(label: str, tree: ast.Module) -> list[Finding]:
    """Return every finding in one parsed module, unsorted."""
    return _Checker(label, tree).run()


class _Checker:
    """Applies the rule tables to one parsed module."""

    def __init__(self, label: str, tree: ast.Module) -> None:
        self._label = label
        self._nodes = list(ast.walk(tree))
        self._parents = {
            id(child): node for node in self._nodes for child in ast.iter_child_nodes(node)
        }
        self._aliases: dict[str, str] = {}
        self._imported: set[str] = set()
        self._called: set[int] = set()
        self._judged_strings: set[int] = set()
        self._findings: list[Finding] = []

    def run(self) -> list[Finding]:
        """Return every finding in the module, unsorted."""
        self._collect_aliases()
        self._collect_calls()
        for node in self._nodes:
            self._visit(node)
        return self._findings

    def _visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            self._check_import(node)
        elif isinstance(node, ast.ImportFrom):
            self._check_import_from(node)
        elif isinstance(node, ast.Name):
            self._check_name(node)
        elif isinstance(node, ast.Attribute):
            self._check_attribute(node)
        elif isinstance(node, ast.Call):
            self._check_call(node)
        elif isinstance(node, ast.Constant):
            self._check_string(node)
        elif isinstance(node, (ast.BinOp, ast.JoinedStr)):
            self._check_string_building(node)

    # -- name resolution ---------------------------------------------------------------------

    def _collect_aliases(self) -> None:
        for node in self._nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    local = alias.asname or alias.name.partition(".")[0]
                    self._aliases[local] = alias.name if alias.asname else local
                    self._imported.add(local)
            elif isinstance(node, ast.ImportFrom):
                # Relative imports name the plugin's own modules, never the standard library.
                module = "." * node.level + (node.module or "")
                for alias in node.names:
                    if alias.name != "*":
                        local = alias.asname or alias.name
                        self._aliases[local] = f"{module}.{alias.name}"
                        self._imported.add(local)
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
                self._imported.add(target.id)
                changed = True
        return changed

    def _collect_calls(self) -> None:
        """Callees of calls, and decorators (``@d`` calls ``d``)."""
        for node in self._nodes:
            if isinstance(node, ast.Call):
                self._called.add(id(node.func))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self._called.update(id(decorator) for decorator in node.decorator_list)

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

    def _module_rooted(self, node: ast.expr) -> bool:
        """True when ``node`` is a Name/Attribute chain starting at an imported name."""
        return _is_dotted(node) and _root_name(node) in self._imported

    def _add(self, node: ast.AST, message: str) -> None:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0) + 1
        self._findings.append(Finding(self._label, line, col, message))

    # -- imports ----------------------------------------------------------------------------

    def _check_import(self, node: ast.Import) -> None:
        for alias in node.names:
            if rules.is_blocked_module(alias.name):
                self._add(alias, f"import of '{alias.name}' is not allowed")

    def _check_import_from(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return
        if rules.is_blocked_module(node.module):
            self._add(node, f"import of '{node.module}' is not allowed")
            return
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            if alias.name == "*" and rules.exposes_blocked_names(node.module):
                self._add(alias, f"star import from '{node.module}' is not allowed")
            elif rules.is_blocked_module(full) or rules.is_blocked_call(full):
                self._add(alias, f"import of '{full}' is not allowed")
            elif rules.is_unsafe_name(alias.name):
                self._add(alias, f"import of '{alias.name}' is not allowed")

    # -- names and attributes ---------------------------------------------------------------

    def _check_name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load) or self._check_qualified(node):
            return
        if rules.is_unsafe_name(node.id):
            self._add(node, f"use of '{node.id}' is not allowed")
            return
        plain = node.id not in self._aliases
        dynamic = rules.ATTRIBUTE_GETTERS | rules.NAMESPACE_GETTERS
        if plain and node.id in dynamic and id(node) not in self._called:
            self._add(node, f"use of '{node.id}' other than a direct call is not allowed")

    def _check_attribute(self, node: ast.Attribute) -> None:
        if rules.is_unsafe_name(node.attr):
            self._add(node, f"access to attribute '{node.attr}' is not allowed")
        elif node.attr == "__dict__" and self._module_rooted(node.value):
            owner = self._qualify(node.value)
            self._add(node, f"access to '__dict__' of module '{owner}' is not allowed")
        else:
            self._check_qualified(node)

    def _check_qualified(self, node: ast.Name | ast.Attribute) -> bool:
        """Report a blocked function or module the name reaches; True if one was reported."""
        qualified = self._qualify(node)
        if not qualified:
            return False
        verb = "call to" if id(node) in self._called else "use of"
        if rules.is_blocked_call(qualified):
            self._add(node, f"{verb} '{qualified}' is not allowed")
            return True
        if isinstance(node, ast.Attribute) and self._module_rooted(node):
            reached = _blocked_suffix(qualified)
            if reached:
                self._add(node, f"{verb} '{qualified}' is not allowed (it is '{reached}')")
                return True
        return False

    # -- calls ------------------------------------------------------------------------------

    def _check_call(self, node: ast.Call) -> None:
        name = self._qualify(node.func)
        if name in rules.ATTRIBUTE_GETTERS:
            self._check_attribute_getter(node, name)
        elif name in rules.ATTRIBUTE_GETTER_FACTORIES:
            self._check_getter_factory(node, name)
        elif name in rules.NAMESPACE_GETTERS:
            self._check_namespace_getter(node, name)

    def _check_attribute_getter(self, node: ast.Call, getter: str) -> None:
        """``getattr(os, "system")`` reaches ``os.system`` just as ``os.system`` does."""
        if any(isinstance(arg, ast.Starred) for arg in node.args) or node.keywords:
            self._add(node, f"{getter}() with unpacked arguments is not allowed")
            return
        if len(node.args) < 2:
            return
        target, name = node.args[0], node.args[1]
        self._judged_strings.add(id(name))
        owner = self._qualify(target)
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            if self._module_rooted(target):
                self._add(
                    node,
                    f"{getter}() with a computed attribute name on module '{owner}' is not allowed",
                )
            return
        attribute = name.value
        if rules.is_unsafe_name(attribute):
            self._add(node, f"access to attribute '{attribute}' is not allowed")
        elif attribute == "__dict__" and self._module_rooted(target):
            self._add(node, f"access to '__dict__' of module '{owner}' is not allowed")
        elif owner and self._module_rooted(target):
            qualified = f"{owner}.{attribute}"
            if rules.is_blocked_call(qualified) or _blocked_suffix(qualified):
                self._add(node, f"use of '{qualified}' is not allowed")

    def _check_getter_factory(self, node: ast.Call, factory: str) -> None:
        """``operator.attrgetter``/``methodcaller`` names must be constant and allowed."""
        names = node.args[:1] if factory.endswith("methodcaller") else node.args
        self._judged_strings.update(id(arg) for arg in names)
        for arg in names:
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                self._add(node, f"{factory}() with a computed name is not allowed")
                return
            for part in arg.value.split("."):
                if rules.is_unsafe_name(part) or _is_blocked_final(part):
                    self._add(node, f"{factory}('{arg.value}') is not allowed")
                    return

    def _check_namespace_getter(self, node: ast.Call, getter: str) -> None:
        """``vars(x)`` is fine unless ``x`` is a module; ``globals()`` and ``locals()`` (and
        ``vars()``) may only be subscripted with a constant key."""
        if node.args:
            if getter == "vars" and self._module_rooted(node.args[0]):
                owner = self._qualify(node.args[0])
                self._add(node, f"vars() of module '{owner}' is not allowed")
            return
        parent = self._parents.get(id(node))
        if isinstance(parent, ast.Subscript) and parent.value is node:
            key = parent.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                return
        self._add(
            node,
            f"{getter}() is allowed only to read or set a constant key (as in {getter}()['NAME'])",
        )

    # -- strings ----------------------------------------------------------------------------

    def _check_string(self, node: ast.Constant) -> None:
        if isinstance(node.value, bytes):
            text = node.value.decode("latin-1")
        elif isinstance(node.value, str):
            text = node.value
        else:
            return
        if id(node) in self._judged_strings:
            return  # an attribute name given to getattr() and friends, judged there
        if isinstance(self._parents.get(id(node)), ast.Expr):
            return  # a docstring or bare string statement is never used as data
        names = rules.unsafe_names_in_text(text)
        if names:
            self._add(node, f"string naming '{names[0]}' is not allowed")

    def _check_string_building(self, node: ast.BinOp | ast.JoinedStr) -> None:
        """``"__glo" + "bals__"`` and ``f"__{name}__"`` build a dunder name at run time."""
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, ast.Add) or _is_add(self._parents.get(id(node))):
                return
            pieces = _flatten_add(node)
        else:
            pieces = list(node.values)
        for index, piece in enumerate(pieces):
            if not (isinstance(piece, ast.Constant) and isinstance(piece.value, str)):
                continue
            text = _SAFE_DUNDER.sub("", piece.value)
            opens = text.startswith("__") and index + 1 < len(pieces)
            closes = text.endswith("__") and index > 0
            if opens or closes:
                self._add(node, "building a dunder name from string pieces is not allowed")
                return


def _is_add(node: ast.AST | None) -> bool:
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)


def _flatten_add(node: ast.expr) -> list[ast.expr]:
    """Operands of a chain of ``+``, left to right (iteratively: chains may be long)."""
    pieces: list[ast.expr] = []
    stack: list[ast.expr] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.BinOp) and isinstance(current.op, ast.Add):
            stack.extend((current.right, current.left))
        else:
            pieces.append(current)
    return pieces


def _blocked_suffix(qualified: str) -> str | None:
    """The blocked module or function a module attribute chain reaches, if any.

    ``shutil.os.system`` reaches ``os.system``; ``logging.threading`` reaches ``threading``.
    Only the chain's last step is judged, so each chain is reported once.
    """
    parts = qualified.split(".")
    for start in range(len(parts)):
        suffix = ".".join(parts[start:])
        common = start > 0 and suffix in rules.COMMON_ATTRIBUTE_WORDS
        if suffix in rules.BLOCKED_MODULES and not common:
            return suffix
        if start > 0 and len(parts) - start >= 2 and rules.is_blocked_call(suffix):
            return suffix
    return None


def _is_blocked_final(name: str) -> bool:
    """True when ``name`` is the last part of a blocked function (``system``, ``execv``)."""
    finals = {blocked.rpartition(".")[2] for blocked in rules.BLOCKED_CALLS if "." in blocked}
    prefixes = {prefix for group in rules.BLOCKED_CALL_PREFIXES.values() for prefix in group}
    return name in finals or name.startswith(tuple(prefixes))


def _is_dotted(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _root_name(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""
