"""Batch pipeline of pydantic_style: plain callables and a ``prepare`` that filters the dataset.

Each step checks the row's ``mime_type`` itself; non-text rows pass through unchanged.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from processors.keywords import find_keywords


def prepare(ds: Any) -> Any:
    """Drop rows with neither text nor a URL."""
    return ds.filter(lambda row: bool(row.get("text")) or bool(row.get("url")))


def _is_text(mime_type: Any) -> bool:
    return str(mime_type or "").startswith("text/")


def make_keyword_step(keywords: list[str]) -> Any:
    """A step adding ``keywords`` (a list for text rows, None for the others)."""

    def keyword_step(batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.copy()
        batch["keywords"] = [
            find_keywords(str(text), keywords) if _is_text(mime) else None
            for text, mime in zip(batch["text"], batch["mime_type"])
        ]
        return batch

    return keyword_step


def count_step(batch: pd.DataFrame) -> pd.DataFrame:
    """Adds ``keyword_count`` to text rows (0 for the others)."""
    batch = batch.copy()
    batch["keyword_count"] = [len(k) if isinstance(k, list) else 0 for k in batch["keywords"]]
    return batch


def build_steps(
    extractor_request: Any,
    container: Any = None,
    base_steps: list[Any] | None = None,
    dataset_size: int | None = None,
    content_flags: Any = None,
) -> dict[str, Any]:
    """Keyword steps; the keywords come from ``extractor_config.parameters`` or, as one of
    Mixpeek's templates has it, from the request's top-level ``parameters``."""
    params = dict(getattr(extractor_request, "parameters", None) or {})
    params.update(extractor_request.extractor_config.parameters or {})
    keywords = [str(k) for k in params.get("keywords", ["cat", "dog"])]
    return {
        "steps": [*(base_steps or []), make_keyword_step(keywords), count_step],
        "prepare": prepare,
    }
