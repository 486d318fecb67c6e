"""load_namespace_model from shared.models.loader, engine.models.loader and engine.models."""

from __future__ import annotations

import engine.models
import engine.models.loader
import pytest
import shared.models.loader
from shared.models.loader import NamespaceModelUnavailable


def test_the_three_import_paths_give_the_same_function() -> None:
    assert engine.models.load_namespace_model is shared.models.loader.load_namespace_model
    assert engine.models.loader.load_namespace_model is shared.models.loader.load_namespace_model


def test_loading_raises_a_clear_error_naming_the_model() -> None:
    with pytest.raises(NamespaceModelUnavailable, match="'my-clip-v2'.*does not store models"):
        engine.models.load_namespace_model("my-clip-v2", version="1", device="cpu")
    assert issubclass(NamespaceModelUnavailable, RuntimeError)
