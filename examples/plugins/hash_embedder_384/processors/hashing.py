"""Deterministic text embeddings from SHA-256: no model, no randomness, no I/O."""

from __future__ import annotations

import hashlib
import math
import struct

_WORD = struct.Struct(">I")
_WORDS_PER_BLOCK = hashlib.sha256().digest_size // _WORD.size


def hash_embedding(text: str, dim: int) -> list[float]:
    """An L2-normalised vector of ``dim`` floats derived only from ``text``.

    Each SHA-256 block of ``counter || text`` yields eight 32-bit words, each mapped to
    [-1, 1]; the same text always gives the same vector.
    """
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    data = text.encode("utf-8")
    values: list[float] = []
    counter = 0
    while len(values) < dim:
        block = hashlib.sha256(counter.to_bytes(4, "big") + data).digest()
        for index in range(_WORDS_PER_BLOCK):
            (word,) = _WORD.unpack_from(block, index * _WORD.size)
            values.append(word / 0xFFFFFFFF * 2.0 - 1.0)
        counter += 1
    values = values[:dim]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
