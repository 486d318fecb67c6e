"""container.llm on the server: the chat-completions body, the model map, the answer, and the
request to the endpoint (through httpx's mock transport)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from plughost.config import Settings
from plughost.services.llm import LlmClient, LlmFailure, build_body, parse_answer, resolve_model

MODELS = {"google/gemini-2.5-flash": "g-flash", "gpt-4o": "local-4o", "*": "default-model"}


def test_the_instruction_and_text_make_one_user_message() -> None:
    body = build_body({"instruction": "Tag it", "text": "a red car", "model": "gpt-4o"}, MODELS)
    assert body == {
        "model": "local-4o",
        "messages": [{"role": "user", "content": "Tag it\n\na red car"}],
    }


def test_images_become_image_url_parts_after_the_text() -> None:
    body = build_body(
        {
            "instruction": "Describe",
            "model": "m",
            "images": ["https://x/a.png", "data:image/png;base64,AA"],
        },
        {},
    )
    parts = body["messages"][0]["content"]
    assert parts == [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
    ]


def test_a_schema_becomes_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    body = build_body({"text": "x", "model": "m", "schema": schema}, {})
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }


def test_only_known_options_are_forwarded() -> None:
    body = build_body(
        {"text": "x", "model": "m", "options": {"temperature": 0.1, "api_key": "no", "url": "no"}},
        {},
    )
    assert body["temperature"] == 0.1 and "api_key" not in body and "url" not in body


def test_models_map_by_provider_and_name_then_name_then_star() -> None:
    assert resolve_model("google", "gemini-2.5-flash", MODELS) == "g-flash"
    assert resolve_model("openai", "gpt-4o", MODELS) == "local-4o"
    assert resolve_model("anthropic", "claude", MODELS) == "default-model"
    assert resolve_model(None, None, MODELS) == "default-model"
    assert resolve_model("x", "unmapped", {}) == "unmapped"
    with pytest.raises(LlmFailure, match="names no model"):
        resolve_model(None, None, {})


def _answer(content: Any) -> dict[str, Any]:
    return {"model": "m", "choices": [{"message": {"content": content}}], "usage": {"t": 1}}


def test_answers_are_text_or_the_parsed_json() -> None:
    assert parse_answer(_answer("hi"), False, "p")["data"] == "hi"
    assert parse_answer(_answer('{"a": 1}'), True, None)["data"] == {"a": 1}
    assert parse_answer(_answer('```json\n{"a": 2}\n```'), True, None)["data"] == {"a": 2}
    assert parse_answer(_answer([{"type": "text", "text": "x"}]), False, None)["text"] == "x"
    with pytest.raises(LlmFailure, match="not the JSON"):
        parse_answer(_answer("not json"), True, None)
    with pytest.raises(LlmFailure, match="no message"):
        parse_answer({"choices": []}, False, None)


def _client(handler: Any, **settings: Any) -> LlmClient:
    base = {"llm_base_url": "http://llm.test/v1/", **settings}
    return LlmClient(Settings(**base), transport=httpx.MockTransport(handler))


def test_the_request_goes_to_chat_completions_with_the_servers_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=_answer("ok"))

    client = _client(handler, llm_api_key="sk-server", llm_model_map='{"*": "tiny"}')
    result = asyncio.run(client.generate({"text": "hello"}, org_key="sk-org"))
    assert result["data"] == "ok"
    assert str(seen[0].url) == "http://llm.test/v1/chat/completions"
    assert seen[0].headers["Authorization"] == "Bearer sk-server"
    assert json.loads(seen[0].content)["model"] == "tiny"


def test_without_a_server_key_the_organizations_key_or_none_is_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=_answer("ok"))

    client = _client(handler)
    asyncio.run(client.generate({"text": "a", "model": "m"}, org_key="sk-org"))
    asyncio.run(client.generate({"text": "a", "model": "m"}, org_key=None))
    assert seen[0].headers["Authorization"] == "Bearer sk-org"
    assert "Authorization" not in seen[1].headers


def test_endpoint_errors_and_unreachable_endpoints_are_named() -> None:
    def fails(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="overloaded")

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(LlmFailure, match="answered 503: overloaded"):
        asyncio.run(_client(fails).generate({"text": "a", "model": "m"}))
    with pytest.raises(LlmFailure, match="cannot reach PLUGHOST_LLM_BASE_URL") as caught:
        asyncio.run(_client(unreachable).generate({"text": "a", "model": "m"}))
    assert caught.value.type_name == "LLMUnavailable"


def test_an_unconfigured_server_names_the_setting() -> None:
    client = LlmClient(Settings())
    assert not client.configured
    with pytest.raises(LlmFailure, match="PLUGHOST_LLM_BASE_URL") as caught:
        asyncio.run(client.generate({"text": "a"}))
    assert caught.value.type_name == "LLMNotConfigured"


def test_a_model_map_that_is_not_an_object_of_names_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="PLUGHOST_LLM_MODEL_MAP"):
        Settings(llm_model_map='{"a": 1}')
