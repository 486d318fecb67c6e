"""Realtime service of pydantic_style, written like Mixpeek's docs: an async
``run_inference``, its own fallback base class when the runtime's is missing, and ``__all__``
naming the service."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from processors.keywords import find_keywords

try:
    from shared.plugins.inference.serve import BaseInferenceService
except ImportError:  # outside a plugin runtime

    class BaseInferenceService:  # type: ignore[no-redef]
        """Local stand-in."""

        def __init__(self) -> None:
            self.logger = logging.getLogger(type(self).__name__)


try:
    from shared.loggers.services import get_logger
except ImportError:  # outside a plugin runtime
    get_logger = logging.getLogger

__all__ = ["KeywordInferenceService"]

logger = get_logger("pydantic_style")
DEFAULT_KEYWORDS = ["cat", "dog"]


class KeywordInferenceService(BaseInferenceService):
    """``{"text": str}`` with parameters ``keywords`` and ``case_sensitive`` ->
    ``{"keywords": [...], "count": n}``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def run_inference(
        self, inputs: dict[str, Any], parameters: dict[str, Any]
    ) -> dict[str, Any]:
        await asyncio.sleep(0)
        self.calls += 1
        text = str(inputs.get("text", ""))
        keywords = [str(k) for k in parameters.get("keywords") or DEFAULT_KEYWORDS]
        found = find_keywords(text, keywords, bool(parameters.get("case_sensitive", False)))
        logger.info("pydantic_style marker=%s found=%d", inputs.get("marker", "-"), len(found))
        return {"keywords": found, "count": len(found)}
