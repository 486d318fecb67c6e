"""The serve_config keys (plughost.domain.serve_config) are the one list every reader uses:
the runtime class plugins build a serve_config with, and the static reader at validation."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from plughost.archive import _serve_config
from plughost.domain import serve_config
from plughost.domain.serve_config import SERVE_CONFIG_KEYS
from plughost.runtime_api.shared.plugins.inference.serve import ServeDeploymentConfig


def test_the_runtime_class_takes_exactly_the_keys_in_their_order() -> None:
    parameters = inspect.signature(ServeDeploymentConfig).parameters
    named = [n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    assert tuple(named) == SERVE_CONFIG_KEYS


def test_the_runtime_class_reports_only_known_keys() -> None:
    config = ServeDeploymentConfig(num_replicas=2, future_key=1)
    assert config.to_dict() == {"enabled": True, "num_replicas": 2}
    assert set(config.to_dict()) <= set(SERVE_CONFIG_KEYS)


def test_the_static_reader_keeps_the_known_keys_and_drops_others() -> None:
    arguments = ", ".join(f"{key}=1" for key in SERVE_CONFIG_KEYS)
    source = f"class S:\n    serve_config = ServeDeploymentConfig({arguments}, other=2)\n"
    assert set(_serve_config.class_serve_config(source)) == set(SERVE_CONFIG_KEYS)


def test_the_key_list_imports_nothing_but_the_standard_library() -> None:
    # the manifest child loads it before any plugin folder is on the import path
    tree = ast.parse(Path(inspect.getfile(serve_config)).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert imported == ["__future__"]
