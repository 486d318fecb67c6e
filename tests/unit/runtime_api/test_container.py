"""``shared.plugins.container`` as plugin code sees it, over a fake transport."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from plughost.runtime_api import container_transport
from plughost.runtime_api.shared.plugins.container import (
    ContainerError,
    LLMRequest,
    container,
)

SENT: list[dict[str, Any]] = []


def _transport(reply: dict[str, Any]) -> Any:
    def send(request: dict[str, Any]) -> Future[Any]:
        SENT.append(request)
        future: Future[Any] = Future()
        future.set_result(reply)
        return future

    return send


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    SENT.clear()
    yield
    container_transport.install(None)


def test_without_a_server_a_call_says_where_container_calls_work() -> None:
    with pytest.raises(ContainerError, match="no plughost server") as caught:
        asyncio.run(container.secrets.list())
    assert caught.value.type == "ContainerUnavailable"


def test_generate_sends_the_arguments_and_returns_data() -> None:
    container_transport.install(
        _transport({"ok": True, "result": {"data": {"a": 1}, "text": "{}"}})
    )
    schema = {"type": "object"}
    result = asyncio.new_event_loop().run_until_complete(
        container.llm.generate(
            instruction="i",
            text="t",
            provider="google",
            model="gemini-2.5-flash",
            schema=schema,
            temperature=0.2,
        )
    )
    assert result.data == {"a": 1}
    assert SENT == [
        {
            "target": "llm.generate",
            "args": {
                "instruction": "i",
                "text": "t",
                "images": [],
                "provider": "google",
                "model": "gemini-2.5-flash",
                "schema": schema,
                "options": {"temperature": 0.2},
            },
        }
    ]


def test_process_takes_a_request_object_or_a_dict() -> None:
    container_transport.install(_transport({"ok": True, "result": {"data": "x"}}))
    asyncio.run(container.llm.process(LLMRequest(text="a", model="m")))
    asyncio.run(container.llm.process({"text": "b", "model": "m"}))
    assert [s["args"]["text"] for s in SENT] == ["a", "b"]
    assert container.llm.service is container.llm


def test_local_images_travel_inline_and_urls_as_they_are(tmp_path: Path) -> None:
    container_transport.install(_transport({"ok": True, "result": {"data": "x"}}))
    image = tmp_path / "p.png"
    image.write_bytes(b"\x89PNG")
    asyncio.run(container.llm.generate(text="t", images=[f"file://{image}", "https://x/y.jpg"]))
    images = SENT[0]["args"]["images"]
    inline = "data:image/png;base64," + base64.b64encode(b"\x89PNG").decode()
    assert images == [inline, "https://x/y.jpg"]


def test_error_replies_raise_with_their_type() -> None:
    container_transport.install(
        _transport({"ok": False, "error": {"type": "LLMNotConfigured", "message": "set it"}})
    )
    with pytest.raises(ContainerError, match="LLMNotConfigured: set it") as caught:
        asyncio.run(container.llm.generate(text="t"))
    assert caught.value.type == "LLMNotConfigured"


def test_secrets_read_values_and_names() -> None:
    container_transport.install(_transport({"ok": True, "result": "v"}))
    assert asyncio.run(container.secrets.get("k")) == "v"
    assert SENT[0] == {"target": "secrets.get", "args": {"name": "k"}}
    with pytest.raises(ValueError):
        asyncio.run(container.secrets.get(""))


def test_inference_and_models_name_what_the_server_offers() -> None:
    for accessor, name in ((container.inference, "inference"), (container.models, "models")):
        with pytest.raises(ContainerError) as caught:
            accessor.get("clip")
        assert f"container.{name}.get('clip')" in str(caught.value)
        assert "container.secrets" in str(caught.value) and "container.llm" in str(caught.value)
