"""Processing logic of docs_cli: a three-number embedding of a text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


def embed(text: str) -> list[float]:
    """Letters, digits and spaces of ``text``, as floats."""
    return [
        float(sum(c.isalpha() for c in text)),
        float(sum(c.isdigit() for c in text)),
        float(text.count(" ")),
    ]


@dataclass
class MyConfig:
    threshold: float = 0.5


class MyProcessor:
    """The CLI page's processor: ``(config, progress_actor=None)``."""

    def __init__(self, config: MyConfig, progress_actor: Any = None) -> None:
        self.config = config
        self.progress_actor = progress_actor

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        texts = batch["text"].fillna("").tolist()
        batch["my_embedding"] = [embed(t) for t in texts]
        batch["above"] = [embed(t)[0] > self.config.threshold for t in texts]
        return batch


class Marker:
    """A ``(config)`` constructor, nothing else."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.mark = str(config["mark"])

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch["mark"] = self.mark
        return batch
