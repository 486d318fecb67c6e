"""Batch pipeline of minilm_embedder.

Steps take a DataFrame-like object (``frame[column]`` reads an iterable column and
``frame[column] = values`` writes one) and return it; pandas is never imported here. The
model loads on the first step that needs it, once per process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

TEXT_COLUMN = "text"
OUTPUT_COLUMN = "minilm_embedding"


@lru_cache(maxsize=1)
def _encoder() -> Any:
    """The process-wide encoder, loaded on first use."""
    from processors.model import MiniLMEncoder

    return MiniLMEncoder()


def prepare(frame: Any) -> Any:
    """Replace missing text with the empty string so every row gets an embedding."""
    frame[TEXT_COLUMN] = ["" if text is None else str(text) for text in frame[TEXT_COLUMN]]
    return frame


def embed_step(frame: Any) -> Any:
    """Add the ``minilm_embedding`` column computed from the ``text`` column in batches."""
    frame[OUTPUT_COLUMN] = _encoder().encode(list(frame[TEXT_COLUMN]))
    return frame


def build_steps(
    extractor_request: Any = None,
    container: Any = None,
    base_steps: list[Any] | None = None,
    dataset_size: int | None = None,
    content_flags: Any = None,
) -> dict[str, Any]:
    """The batch steps (any ``base_steps`` first, then the embedding) and the prepare hook."""
    return {"steps": [*(base_steps or []), embed_step], "prepare": prepare}
