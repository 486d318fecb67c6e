"""``engine.models``: the model loaders and lazy loading, by Mixpeek's names (the same
objects as in ``shared.models``)."""

from __future__ import annotations

from shared.models.lazy import LazyModelMixin, lazy_model
from shared.models.loader import (
    HFModelNotCached,
    NamespaceModelUnavailable,
    OnnxModel,
    is_hf_model_cached,
    load_hf_model,
    load_namespace_model,
)

__all__ = [
    "HFModelNotCached",
    "LazyModelMixin",
    "NamespaceModelUnavailable",
    "OnnxModel",
    "is_hf_model_cached",
    "lazy_model",
    "load_hf_model",
    "load_namespace_model",
]
