"""Which methods a path takes: the ``Allow`` header of 405 answers and of ``OPTIONS``.

The router answers a wrong method with the ``Allow`` of the first route whose path matched,
though a path often has several routes (``GET`` and ``DELETE /{plugin_id}``); this looks at
every route instead. ``HEAD`` is listed wherever ``GET`` is (Starlette answers it), and
``OPTIONS`` everywhere (:mod:`plughost.dataplane.fastpath` answers it). The table is built once, when the app
is (:func:`method_table`), and kept on the app's state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from starlette.routing import Route, compile_path

_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class MethodTable:
    """Path patterns and their methods."""

    def __init__(self, routes: Iterable[tuple[str, set[str]]]) -> None:
        self._entries: list[tuple[re.Pattern[str], set[str]]] = [
            (compile_path(path)[0], methods) for path, methods in routes
        ]

    def allowed(self, path: str) -> list[str]:
        """The methods of ``path``'s routes, sorted; empty when no route has the path."""
        methods: set[str] = set()
        for regex, route_methods in self._entries:
            if regex.match(path):
                methods |= route_methods
        if not methods:
            return []
        if "GET" in methods:
            methods.add("HEAD")
        methods.add("OPTIONS")
        return sorted(methods, key=lambda m: _ORDER.index(m) if m in _ORDER else len(_ORDER))


def method_table(routes: Iterable[Any]) -> MethodTable:
    """The table of an app's routes, those of included routers too."""
    return MethodTable(_flatten(routes))


def _flatten(routes: Iterable[Any]) -> Iterable[tuple[str, set[str]]]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's included router
        if inner is not None:
            yield from _flatten(inner.routes)
        elif isinstance(route, Route) and route.methods:
            yield route.path, set(route.methods)
