"""Batch pipeline of docs_quickstart, as the quick start writes it: ``build_steps`` with five
named parameters and no ``**kwargs`` returning a ready-made processor, and an ``extract``."""

import hashlib

import pandas as pd


def text_to_embedding(text: str, dim: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [b / 255.0 for b in digest[:dim]]


class TextEmbedBatchProcessor:
    def __init__(self, config=None, **kwargs):
        config = config or {}
        self.text_column = config.get("text_column", "text")
        self.output_column = "text_embed_v1_embedding"

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if batch.empty:
            return batch
        batch = batch.reset_index(drop=True)
        batch[self.output_column] = [
            text_to_embedding("" if v is None else str(v)) for v in batch[self.text_column]
        ]
        return batch


def count_words(batch: pd.DataFrame) -> pd.DataFrame:
    batch["words"] = [len(str(t).split()) for t in batch["text"]]
    return batch


def build_steps(
    extractor_request=None, container=None, base_steps=None, dataset_size=None, content_flags=None
):
    processor = TextEmbedBatchProcessor()
    steps = list(base_steps or [])
    steps.append(processor)
    steps.append(count_words)
    return {"steps": steps, "prepare": lambda ds: ds}


def extract(extractor_request=None, base_steps=None, dataset_size=None, content_flags=None):
    result = build_steps(
        extractor_request=extractor_request,
        base_steps=base_steps,
        dataset_size=dataset_size,
        content_flags=content_flags,
    )

    class PipelineResult:
        def __init__(self, steps, prepare):
            self.steps = steps
            self.prepare = prepare

    return PipelineResult(result["steps"], result["prepare"])
