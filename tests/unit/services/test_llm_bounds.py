"""The LLM gateway's bounds (plughost.services.llm): the prompt size, checked before a
request is sent, and the per-namespace requests per minute (a sliding window)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from plughost.config import Settings
from plughost.services.llm import LlmClient, LlmFailure, RateWindow, check_prompt_size


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_allows_n_per_minute_per_key_and_frees_slots_as_they_age() -> None:
    clock = Clock()
    window = RateWindow(2, clock)
    window.take("ns_a")
    clock.now += 30
    window.take("ns_a")
    with pytest.raises(LlmFailure) as caught:
        window.take("ns_a")
    assert caught.value.type_name == "LLMRateLimited"
    assert "retry in 30 s" in caught.value.message
    assert "PLUGHOST_LLM_REQUESTS_PER_MINUTE" in caught.value.message
    window.take("ns_b")  # another namespace has its own window
    clock.now += 30.5  # the first call is now older than 60 s
    window.take("ns_a")
    with pytest.raises(LlmFailure):
        window.take("ns_a")


def test_a_zero_bound_is_no_bound() -> None:
    window = RateWindow(0)
    for _ in range(1000):
        window.take("ns")


def test_the_prompt_size_counts_the_messages_as_json_bytes() -> None:
    body = {"messages": [{"role": "user", "content": "é" * 100}]}
    check_prompt_size(body, 300)
    with pytest.raises(LlmFailure) as caught:
        check_prompt_size(body, 150)
    assert caught.value.type_name == "LLMRequestTooLarge"
    assert "PLUGHOST_LLM_MAX_PROMPT_BYTES" in caught.value.message


def _client(seen: list[Any], **settings: Any) -> LlmClient:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})

    config = Settings(llm_base_url="http://llm.invalid/v1", **settings)
    return LlmClient(config, transport=httpx.MockTransport(answer))


def test_nothing_is_sent_past_either_bound() -> None:
    seen: list[Any] = []
    client = _client(seen, llm_max_prompt_bytes=1000, llm_requests_per_minute=2)
    with pytest.raises(LlmFailure, match="it was not sent"):
        asyncio.run(client.generate({"text": "x" * 2000, "model": "m"}, namespace="ns"))
    images = {"text": "see", "images": ["data:image/png;base64," + "A" * 2000], "model": "m"}
    with pytest.raises(LlmFailure, match="PLUGHOST_LLM_MAX_PROMPT_BYTES"):
        asyncio.run(client.generate(images, namespace="ns"))
    assert seen == []
    for _ in range(2):
        asyncio.run(client.generate({"text": "hi", "model": "m"}, namespace="ns"))
    with pytest.raises(LlmFailure, match="retry in"):
        asyncio.run(client.generate({"text": "hi", "model": "m"}, namespace="ns"))
    assert len(seen) == 2
