"""A large plugin archive (hundreds of Python modules) and a thread that keeps calling a
deployed plugin meanwhile: the load of the upload-stall tests."""

from __future__ import annotations

import io
import threading
import zipfile
from typing import Any

import httpx
from deploy_support import plugin_archive
from support import LiveServer, zip_bytes

_MODULE = '''"""Generated module {i}: something for the intake to unpack, hash and scan."""
import math
from dataclasses import dataclass


@dataclass
class Item{i}:
    name: str
    weight: float = 1.0

    def scaled(self, factor: float) -> float:
        return self.weight * factor + {i}
'''
_FUNCTION = """

def transform_{i}_{j}(values, offset={j}):
    total = 0.0
    for k, v in enumerate(values):
        if k % 3 == 0:
            total += math.sqrt(abs(v)) + offset
        elif k % 3 == 1:
            total -= v * {j} / (k + 1)
        else:
            total += sum(x for x in range(k) if x % 2) / (k + 1)
    return {{"module": {i}, "fn": {j}, "total": total, "items": [Item{i}("a", total)]}}
"""


def many_modules_archive(name: str, version: str = "1.0.0", modules: int = 400) -> bytes:
    """A valid plugin (realtime included) with ``modules`` extra modules in processors/."""
    base = zipfile.ZipFile(io.BytesIO(plugin_archive(name, version)))
    files: dict[str, str | bytes] = {n: base.read(n) for n in base.namelist()}
    files["processors/__init__.py"] = ""
    for i in range(modules):
        body = _MODULE.format(i=i) + "".join(_FUNCTION.format(i=i, j=j) for j in range(5))
        files[f"processors/mod_{i:03d}.py"] = body
    return zip_bytes(files)


class Caller(threading.Thread):
    """Calls ``route`` back to back until stopped; keeps every failure (status or error)."""

    def __init__(self, server: LiveServer, route: str) -> None:
        super().__init__(name="realtime-caller", daemon=True)
        self.server, self.route = server, route
        self.calls = 0
        self.failures: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.server.url, headers=self.server.auth, timeout=60) as c:
            while not self._stop_event.is_set():
                self.call(c)

    def call(self, c: httpx.Client) -> None:
        body: dict[str, Any] = {"inputs": {"text": "hi"}, "parameters": {}}
        try:
            resp = c.post(self.route, json=body)
            if resp.status_code != 200:
                self.failures.append(f"{resp.status_code} {resp.text[:200]}")
        except httpx.HTTPError as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")
        self.calls += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(120)
