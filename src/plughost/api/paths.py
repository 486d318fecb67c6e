"""Path segments with a shape: ``{plugin_id:plugin_id}`` and ``{batch_id:batch_id}``.

A plugin id is always ``{name}_{X}_{Y}_{Z}`` and a batch id ``bat_`` and hex, so a path
such as ``/plugins/uploads`` or ``/batches/uploads`` is never taken for an id: a method
those fixed paths lack answers 405 with their ``Allow``, not a 404 about a plugin named
"uploads". The same patterns are published in the OpenAPI document.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor

from plughost.domain.ids import PLUGIN_ID_PATTERN

BATCH_ID_PATTERN = r"^bat_[0-9a-f]{1,64}$"


class _Pattern(Convertor[str]):
    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class PluginIdConvertor(_Pattern):
    regex = PLUGIN_ID_PATTERN.strip("^$")


class BatchIdConvertor(_Pattern):
    regex = BATCH_ID_PATTERN.strip("^$")


register_url_convertor("plugin_id", PluginIdConvertor())
register_url_convertor("batch_id", BatchIdConvertor())
