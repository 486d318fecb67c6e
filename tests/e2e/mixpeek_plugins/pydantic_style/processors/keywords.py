"""Keyword spotting."""

from __future__ import annotations

import re


def find_keywords(text: str, keywords: list[str], case_sensitive: bool = False) -> list[str]:
    """The keywords that occur in ``text`` as whole words, in the order of ``keywords``."""
    flags = 0 if case_sensitive else re.IGNORECASE
    return [k for k in keywords if re.search(rf"\b{re.escape(k)}\b", text, flags)]
