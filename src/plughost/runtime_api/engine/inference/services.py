"""``engine.inference.services.BaseBatchInferenceService``: the same class as
``shared.plugins.inference.batch.BaseBatchInferenceService``."""

from __future__ import annotations

from shared.plugins.inference.batch import BaseBatchInferenceService

__all__ = ["BaseBatchInferenceService"]
