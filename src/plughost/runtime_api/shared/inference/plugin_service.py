"""The batch service of another plugin deployed in the namespace: each row is one call of
that plugin, through the server (plugin processes have no network).

``config`` (an object or a dict) may give ``input_mapping`` (``{input key: column}``,
default ``{"text": <text_column or "data">}``), ``parameters`` (sent with every call) and
``output_column_name`` (default ``result``), which receives each call's answer.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from plughost.domain.container import PLUGIN_CALL, PLUGIN_HAS, reply_parts
from plughost.runtime_api import container_transport

from ..plugins.inference.batch import BaseBatchInferenceService

if TYPE_CHECKING:
    import pandas as pd

WINDOW = 16  # calls in flight per batch: the server caps each namespace's anyway
WAIT_S = 600.0


class PluginCallError(RuntimeError):
    """The other plugin's call failed (its type and message in the text)."""


def _setting(config: Any, key: str) -> Any:
    return config.get(key) if isinstance(config, dict) else getattr(config, key, None)


def plugin_deployed(name: str) -> bool:
    """Whether the server has a plugin ``name`` deployed in this namespace (False without a
    server to ask, as while a realtime service is constructed)."""
    transport = container_transport.current()
    if transport is None:
        return False
    reply = transport({"target": PLUGIN_HAS, "args": {"name": name}}).result(WAIT_S)
    ok, result, _, _ = reply_parts(reply)
    return ok and result is True


class PluginBatchService(BaseBatchInferenceService):
    """See the module; subclasses set ``plugin``."""

    plugin: str = ""

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        mapping = _setting(self.config, "input_mapping") or {
            "text": _setting(self.config, "text_column") or "data"
        }
        parameters = _setting(self.config, "parameters") or {}
        output = _setting(self.config, "output_column_name") or "result"
        rows = batch[list(dict.fromkeys(mapping.values()))].to_dict("records")
        results: list[Any] = []
        for start in range(0, len(rows), WINDOW):
            futures = [self._send(row, mapping, parameters) for row in rows[start : start + WINDOW]]
            results.extend(self._answer(f) for f in futures)
        batch = batch.copy()
        batch[output] = results
        return batch

    def _send(self, row: dict[str, Any], mapping: dict[str, str], params: Any) -> Future[Any]:
        transport = container_transport.current()
        if transport is None:
            raise PluginCallError(f"{self.plugin}: no plughost server behind this process")
        inputs = {key: row[column] for key, column in mapping.items()}
        args = {"name": self.plugin, "inputs": inputs, "parameters": dict(params)}
        return transport({"target": PLUGIN_CALL, "args": args})

    def _answer(self, future: Future[Any]) -> Any:
        ok, result, type_name, message = reply_parts(future.result(WAIT_S))
        if not ok:
            raise PluginCallError(f"{type_name}: {message}")
        return result


def plugin_service(name: str) -> type[PluginBatchService]:
    return type(f"BatchService[{name}]", (PluginBatchService,), {"plugin": name})
