"""Realtime service of minilm_embedder: ``{"text": str}`` -> ``{"embedding": [384 floats]}``."""

from __future__ import annotations

from typing import Any

# processors.model switches the Hugging Face hub off before anything hub-aware is imported.
from .processors.model import MiniLMEncoder

try:
    from shared.plugins.inference.serve import BaseInferenceService
except ImportError:  # running outside a plugin host

    class BaseInferenceService:  # type: ignore[no-redef]
        """Local stand-in with the host's constructor contract."""

        def __init__(self, **kwargs: Any) -> None:
            self.config = dict(kwargs)


class MiniLMService(BaseInferenceService):
    """Embeds ``inputs["text"]``; ``parameters["normalize"]`` (default true) picks unit length.

    Construction kwargs: ``device`` (default: the library's choice) and ``batch_size``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._encoder = MiniLMEncoder(
            device=kwargs.get("device"), batch_size=int(kwargs.get("batch_size", 32))
        )
        self._encoder.encode(["warm-up"])

    def run_inference(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
        """Return ``{"embedding": [...]}``; raises TypeError when ``text`` is not a string."""
        text = inputs.get("text")
        if not isinstance(text, str):
            raise TypeError("inputs.text must be a string")
        normalize = bool((parameters or {}).get("normalize", True))
        return {"embedding": self._encoder.encode([text], normalize=normalize)[0]}


def get_inference_service(**kwargs: Any) -> MiniLMService:
    """The service the host builds once per replica."""
    return MiniLMService(**kwargs)
