"""Processors of attr_style."""

from .tagging import image_tag, length_tag
from .text import normalise, word_count

__all__ = ["image_tag", "length_tag", "normalise", "word_count"]
