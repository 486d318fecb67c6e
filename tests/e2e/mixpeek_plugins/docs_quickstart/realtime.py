"""Realtime endpoint of docs_quickstart, as the plugins page writes it: a BaseInferenceService
whose only handler is ``async __call__(inputs, parameters)``."""

from pipeline import text_to_embedding
from shared.plugins.inference.serve import BaseInferenceService


class InferenceService(BaseInferenceService):
    """Real-time HTTP inference endpoint."""

    def __init__(self):
        super().__init__()
        self._model = None

    async def __call__(self, inputs: dict, parameters: dict) -> dict:
        text = inputs.get("text", "")
        dim = int(parameters.get("dim", 8))
        return {"embedding": text_to_embedding(text, dim), "style": "async_call"}
