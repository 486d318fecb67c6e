"""``engine.models.loader``: the same loaders as ``shared.models.loader``."""

from __future__ import annotations

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
    "NamespaceModelUnavailable",
    "OnnxModel",
    "is_hf_model_cached",
    "load_hf_model",
    "load_namespace_model",
]
