"""The Ray Serve baseline's deployment: the same plugin object, behind Ray Serve's HTTP path.

The class loads the plugin with plughost's own loader (as the floor and plughost's replicas
do) and answers ``{"inputs", "parameters"}`` POSTs with the handler's result encoded by orjson,
so every system pays the same JSON cost and differs only in its serving layer.
This module is pickled by value into Ray's workers (see ray_host.py); it must import only
what the venv has (plughost, orjson, starlette).
"""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


class PluginIngress:
    """A Serve ingress class wrapping one plugin's service.

    ``call_in_thread``: run a plain handler in one dedicated thread (compute-heavy plugins),
    as the floor and plughost's replica do for them.
    """

    def __init__(self, plugin_dir: str, call_in_thread: bool = False) -> None:
        from plughost.replica.loader import load_plugin

        self._handler = load_plugin(Path(plugin_dir)).handler
        plain = not inspect.iscoroutinefunction(self._handler)
        self._executor = ThreadPoolExecutor(max_workers=1) if call_in_thread and plain else None

    async def __call__(self, request: Any) -> Any:
        import orjson
        from starlette.responses import Response

        raw = await request.body()
        body = orjson.loads(raw) if raw else {}
        inputs, parameters = body.get("inputs") or {}, body.get("parameters") or {}
        if self._executor is not None:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor, self._handler, inputs, parameters)
        else:
            result = self._handler(inputs, parameters)
        if inspect.isawaitable(result):
            result = await result
        return Response(orjson.dumps(result), media_type="application/json")
