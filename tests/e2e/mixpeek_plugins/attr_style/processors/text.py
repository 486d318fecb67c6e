"""Text helpers."""

from __future__ import annotations


def normalise(text: str) -> str:
    """Lower case, runs of whitespace collapsed to one space."""
    return " ".join(text.split()).lower()


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())
