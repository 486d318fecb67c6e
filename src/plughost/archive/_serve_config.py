"""Read a service class's ``serve_config = ServeDeploymentConfig(...)`` from realtime.py, statically.

Mixpeek lets a realtime service class carry its deployment settings as a class attribute.
plughost reads it from the source, without running it: in the body of a class in realtime.py,
an assignment (plain or annotated) of ``serve_config`` to a call of ``ServeDeploymentConfig``
(or ``<module>.ServeDeploymentConfig``). Only keyword arguments whose value is a literal and
whose name is a known key count; anything else is ignored. When several classes carry one,
the class ``__all__`` names wins, else the first in the file.

The manifest child, started by path, loads this module by path: it imports only the standard
library and :mod:`plughost.domain.serve_config` (itself standard library only).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from plughost.domain.serve_config import SERVE_CONFIG_KEYS

CONFIG_CLASS = "ServeDeploymentConfig"
ATTRIBUTE = "serve_config"
MAX_SOURCE_BYTES = 2_000_000


def class_serve_config(source: str) -> dict[str, Any]:
    """The literal serve_config keys a service class in ``source`` declares ({} when none).

    Never raises for bad source: a file that does not parse declares nothing.
    """
    if len(source) > MAX_SOURCE_BYTES:
        return {}
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return {}
    found: list[tuple[str, dict[str, Any]]] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            config = _class_body_config(node)
            if config is not None:
                found.append((node.name, config))
    if not found:
        return {}
    exported = _exported_names(tree)
    named = [config for name, config in found if name in exported]
    return (named or [found[0][1]])[0]


def merge_serve_config(
    manifest_config: Mapping[str, Any] | None, class_config: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The class's keys overlaid by the manifest's (the manifest wins per key).

    None when neither gives any key, so a plugin without either keeps ``serve_config: None``.
    """
    merged = {**class_config, **(manifest_config or {})}
    return merged if merged or manifest_config is not None else None


def _class_body_config(node: ast.ClassDef) -> dict[str, Any] | None:
    for statement in node.body:
        value = _serve_config_value(statement)
        if isinstance(value, ast.Call) and _names_config_class(value.func):
            return _literal_keywords(value)
    return None


def _serve_config_value(statement: ast.stmt) -> ast.expr | None:
    if isinstance(statement, ast.Assign):
        targets = statement.targets
        if any(isinstance(t, ast.Name) and t.id == ATTRIBUTE for t in targets):
            return statement.value
    if isinstance(statement, ast.AnnAssign):
        target = statement.target
        if isinstance(target, ast.Name) and target.id == ATTRIBUTE:
            return statement.value
    return None


def _names_config_class(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id == CONFIG_CLASS
    return isinstance(func, ast.Attribute) and func.attr == CONFIG_CLASS


def _literal_keywords(call: ast.Call) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg not in SERVE_CONFIG_KEYS:
            continue
        try:
            value = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, (bool, int, float)):
            config[keyword.arg] = value
    return config


def _exported_names(tree: ast.Module) -> frozenset[str]:
    """Names a literal module-level ``__all__`` lists."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            try:
                listed = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return frozenset()
            if isinstance(listed, (list, tuple)):
                return frozenset(name for name in listed if isinstance(name, str))
    return frozenset()
