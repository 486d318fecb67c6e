"""The namespace model ids a plugin's code names as constants (standard library only: the
scan child imports it by path).

Recorded at intake so that deleting a model a deployed plugin uses is refused. Seen:

* the first argument (or ``model_id=``) of a call to ``load_namespace_model``,
  ``lazy_model`` and ``get_batch_service`` (by name or as an attribute: ``loader.load_...``),
  when it is a string constant;
* a class attribute ``model_id = "..."`` (``LazyModelMixin``'s).

Not seen: an id computed at run time (an f-string, a variable, a parameter).
"""

from __future__ import annotations

import ast

LOADERS = frozenset({"load_namespace_model", "lazy_model", "get_batch_service"})
KEYWORDS = frozenset({"model_id", "name"})
MAX_REFS = 200


def model_refs(tree: ast.AST) -> set[str]:
    """The model ids ``tree`` names as constants."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _callee(node.func) in LOADERS:
            found.update(_constant_argument(node))
        elif isinstance(node, ast.ClassDef):
            found.update(_class_model_id(node))
        if len(found) >= MAX_REFS:
            break
    return found


def _callee(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _constant_argument(call: ast.Call) -> list[str]:
    values = [call.args[0]] if call.args else []
    values += [kw.value for kw in call.keywords if kw.arg in KEYWORDS]
    return [v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)]


def _class_model_id(cls: ast.ClassDef) -> list[str]:
    found = []
    for stmt in cls.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            targets, value = [stmt.target], stmt.value
        named = any(isinstance(t, ast.Name) and t.id == "model_id" for t in targets)
        if named and isinstance(value, ast.Constant) and isinstance(value.value, str):
            found.append(value.value)
    return found
