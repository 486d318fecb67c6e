"""Tags for texts and images."""

from __future__ import annotations

from .text import word_count

SHORT_LIMIT = 5


def length_tag(text: str) -> str:
    """``short`` up to SHORT_LIMIT words, else ``long``."""
    return "short" if word_count(text) <= SHORT_LIMIT else "long"


def image_tag(url: str, prefix: str) -> str:
    """``prefix:file-name`` of an image URL."""
    return f"{prefix}:{url.rsplit('/', 1)[-1]}"
