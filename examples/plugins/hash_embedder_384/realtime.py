"""Realtime service of hash_embedder_384: ``{"text": str}`` -> ``{"embedding": [384 floats]}``."""

from __future__ import annotations

from typing import Any

try:
    from shared.plugins.inference.serve import BaseInferenceService
except ImportError:  # running outside a plugin host

    class BaseInferenceService:  # type: ignore[no-redef]
        """Local stand-in with the host's constructor contract."""

        def __init__(self, **kwargs: Any) -> None:
            self.config = dict(kwargs)


from processors.hashing import hash_embedding

EMBEDDING_DIM = 384


class HashEmbedder384Service(BaseInferenceService):
    """Embeds ``inputs["text"]`` deterministically; the same text gives the same vector."""

    def run_inference(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
        """Return ``{"embedding": [...]}``; raises TypeError when ``text`` is not a string."""
        text = inputs.get("text")
        if not isinstance(text, str):
            raise TypeError("inputs.text must be a string")
        return {"embedding": hash_embedding(text, EMBEDDING_DIM)}
