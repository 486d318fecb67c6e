"""Batch pipeline of hash_embedder_384.

Steps take a DataFrame-like object (``frame[column]`` reads an iterable column and
``frame[column] = values`` writes one) and return it; pandas is never imported here.
"""

from __future__ import annotations

from typing import Any

from processors.hashing import hash_embedding

EMBEDDING_DIM = 384
TEXT_COLUMN = "text"
OUTPUT_COLUMN = "hash_embedding_384"


def prepare(frame: Any) -> Any:
    """Replace missing text with the empty string so every row gets an embedding."""
    frame[TEXT_COLUMN] = ["" if text is None else str(text) for text in frame[TEXT_COLUMN]]
    return frame


def embed_step(frame: Any) -> Any:
    """Add the ``hash_embedding_384`` column computed from the ``text`` column."""
    frame[OUTPUT_COLUMN] = [hash_embedding(text, EMBEDDING_DIM) for text in frame[TEXT_COLUMN]]
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
