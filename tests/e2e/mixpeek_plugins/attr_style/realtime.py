"""Realtime service of attr_style, written like Mixpeek's template: only ``_process_single``
(the base class's ``run_inference`` dispatches to it), ``self.logger``, and the replica count
as a ``serve_config`` class attribute."""

from __future__ import annotations

import time
import uuid
from typing import Any

from shared.plugins.inference.serve import BaseInferenceService, ServeDeploymentConfig

from .processors.tagging import length_tag
from .processors.text import normalise, word_count

MAX_DELAY_S = 2.0


class TextStatsService(BaseInferenceService):
    """``{"text": str, "delay"?: seconds}`` -> normalised text, word count, length tag and a
    token naming the replica that answered."""

    serve_config = ServeDeploymentConfig(enabled=True, num_replicas=2, num_cpus=0.1)

    def __init__(self) -> None:
        super().__init__()
        self.replica = uuid.uuid4().hex
        self.logger.info("attr_style replica %s ready", self.replica)

    def _process_single(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
        text = str(inputs.get("text", ""))
        delay = min(float(inputs.get("delay") or 0.0), MAX_DELAY_S)
        if delay > 0:
            time.sleep(delay)
        normalised = normalise(text)
        if parameters.get("upper"):
            normalised = normalised.upper()
        self.logger.info(
            "attr_style marker=%s words=%d", inputs.get("marker", "-"), word_count(text)
        )
        return {
            "normalised": normalised,
            "word_count": word_count(text),
            "tag": length_tag(text),
            "replica": self.replica,
        }
