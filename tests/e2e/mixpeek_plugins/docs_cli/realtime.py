"""Realtime endpoint of docs_cli, as the CLI page writes it: ``class RealtimeHandler`` with
``predict(self, request)``, no base class; ``request`` is the inputs dict."""

from typing import Any

from .processors.core import embed


class RealtimeHandler:
    def __init__(self):
        self._calls = 0

    def predict(self, request: dict[str, Any]) -> dict[str, Any]:
        self._calls += 1
        text = request.get("text", "")
        return {"embedding": embed(text), "style": "cli_predict"}
