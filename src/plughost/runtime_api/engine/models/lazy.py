"""``engine.models.lazy``: ``LazyModelMixin`` and ``@lazy_model`` (``shared.models.lazy``)."""

from __future__ import annotations

from shared.models.lazy import LazyModelMixin, lazy_model

__all__ = ["LazyModelMixin", "lazy_model"]
