"""get_batch_service for a plugin deployed in the namespace: asked of the server through the
container transport, then one container call per row (a fake transport stands in for it)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from shared.inference.plugin_service import PluginCallError
from shared.inference.registry import BatchServiceNotFound, get_batch_service
from shared.models.index import MODELS_DIR_ENV

from plughost.runtime_api import container_transport

DEPLOYED = {"scorer"}


class FakeServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: dict[str, Any]) -> Future[Any]:
        self.requests.append(request)
        args = request["args"]
        future: Future[Any] = Future()
        if request["target"] == "plugins.has":
            future.set_result({"ok": True, "result": args["name"] in DEPLOYED})
        elif args["inputs"].get("text") == "fail":
            future.set_result({"ok": False, "error": {"type": "PluginError", "message": "no"}})
        else:
            text = args["inputs"]["text"]
            future.set_result({"ok": True, "result": {"len": len(text), **args["parameters"]}})
        return future


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    fake = FakeServer()
    container_transport.install(fake)
    try:
        yield fake
    finally:
        container_transport.install(None)


def test_a_deployed_plugin_becomes_a_batch_service_calling_it_per_row(server: FakeServer) -> None:
    service_class = get_batch_service("scorer")
    step = service_class({"input_mapping": {"text": "body"}, "parameters": {"mode": "x"},
                          "output_column_name": "score"})
    out = step(pd.DataFrame({"body": ["a", "bbb"] * 20}))
    assert out["score"].tolist() == [{"len": 1, "mode": "x"}, {"len": 3, "mode": "x"}] * 20
    calls = [r for r in server.requests if r["target"] == "plugins.call"]
    assert len(calls) == 40 and calls[0]["args"]["name"] == "scorer"


def test_a_failing_row_fails_the_batch_with_the_plugins_error(server: FakeServer) -> None:
    step = get_batch_service("scorer")(None)
    with pytest.raises(PluginCallError, match="PluginError: no"):
        step(pd.DataFrame({"data": ["ok", "fail"]}))


def test_an_unknown_name_says_no_plugin_is_deployed(server: FakeServer) -> None:
    with pytest.raises(BatchServiceNotFound, match="no plugin of that name is deployed"):
        get_batch_service("nobody")
