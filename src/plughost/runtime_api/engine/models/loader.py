"""``engine.models.loader``: the same ``load_namespace_model`` as ``shared.models.loader``."""

from __future__ import annotations

from shared.models.loader import NamespaceModelUnavailable, load_namespace_model

__all__ = ["NamespaceModelUnavailable", "load_namespace_model"]
