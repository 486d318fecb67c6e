"""``container.llm`` on the server: one chat-completions request to an OpenAI-compatible
endpoint (``PLUGHOST_LLM_BASE_URL``: vLLM, Ollama, OpenAI, any gateway).

A plugin's ``generate(instruction=, text=, images=, provider=, model=, schema=)`` becomes one
user message (the instruction, then the text; image URLs as ``image_url`` parts), ``schema``
becomes ``response_format: {"type": "json_schema", ...}`` and the model name goes through
``PLUGHOST_LLM_MODEL_MAP``. The answer is ``{"data", "text", "model", "provider", "usage"}``:
``data`` is the parsed JSON when a schema was given, else the text.

Bounds, both checked before anything is sent: the request's ``messages`` may hold at most
``PLUGHOST_LLM_MAX_PROMPT_BYTES`` of JSON (``LLMRequestTooLarge``), and one namespace's
plugins at most ``PLUGHOST_LLM_REQUESTS_PER_MINUTE`` calls in any 60 s (``LLMRateLimited``,
with the seconds to wait).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from plughost.config import Settings

if TYPE_CHECKING:  # httpx (and the rich it imports) on the first LLM call, not at start-up
    import httpx

NOT_CONFIGURED = "LLMNotConfigured"
# what a plugin may tune; anything else it passes is dropped, never forwarded
OPTION_KEYS = frozenset(
    {"temperature", "max_tokens", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty"}
)
MAX_ERROR_BODY = 500
TOO_LARGE = "LLMRequestTooLarge"
RATE_LIMITED = "LLMRateLimited"
WINDOW_S = 60.0
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class LlmFailure(Exception):
    """The call failed; ``type_name`` is what the plugin's ContainerError carries."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message


def not_configured() -> LlmFailure:
    return LlmFailure(
        NOT_CONFIGURED,
        "container.llm is not configured on this server: set PLUGHOST_LLM_BASE_URL to an "
        "OpenAI-compatible endpoint (vLLM, Ollama, OpenAI, any gateway), and "
        "PLUGHOST_LLM_API_KEY or the organization secret llm_api_key when it needs a key",
    )


def resolve_model(provider: Any, model: Any, models: dict[str, str]) -> str:
    """The endpoint's model for what the plugin asked: ``provider/model``, then ``model``,
    then ``"*"`` in the map; an unmapped name as it is. LlmFailure when there is none."""
    name = model if isinstance(model, str) and model else ""
    keys = [f"{provider}/{name}"] if provider and name else []
    keys += [name] if name else []
    for key in [*keys, "*"]:
        if key in models:
            return models[key]
    if name:
        return name
    raise LlmFailure(
        "LLMRequestError",
        'the call names no model and PLUGHOST_LLM_MODEL_MAP has no "*" entry',
    )


def build_body(args: dict[str, Any], models: dict[str, str]) -> dict[str, Any]:
    """The chat-completions request body for a plugin's ``generate`` arguments."""
    prompt = "\n\n".join(str(part) for part in (args.get("instruction"), args.get("text")) if part)
    images = [str(url) for url in args.get("images") or []]
    content: str | list[dict[str, Any]] = prompt
    if images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}] if prompt else []
        parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
        content = parts
    body: dict[str, Any] = {
        "model": resolve_model(args.get("provider"), args.get("model"), models),
        "messages": [{"role": "user", "content": content}],
    }
    schema = args.get("schema")
    if schema is not None:
        if not isinstance(schema, dict):
            raise LlmFailure("LLMRequestError", "schema must be a JSON Schema object")
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": schema},
        }
    options = args.get("options") or {}
    if isinstance(options, dict):
        body.update({k: v for k, v in options.items() if k in OPTION_KEYS})
    return body


def _message_text(answer: Any) -> str:
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LlmFailure("LLMResponseError", "the LLM endpoint's answer has no message") from exc
    if isinstance(content, list):  # some gateways answer content parts
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def parse_answer(answer: Any, with_schema: bool, provider: Any) -> dict[str, Any]:
    """The plugin's result for a chat-completions answer."""
    text = _message_text(answer)
    data: Any = text
    if with_schema:
        fenced = _FENCE.match(text)
        try:
            data = json.loads(fenced.group(1) if fenced else text)
        except json.JSONDecodeError as exc:
            raise LlmFailure(
                "LLMResponseError", f"the model's answer is not the JSON the schema asks for: {exc}"
            ) from exc
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    return {
        "data": data,
        "text": text,
        "model": str(answer.get("model") or ""),
        "provider": provider,
        "usage": usage,
    }


def check_prompt_size(body: dict[str, Any], limit: int) -> None:
    """LlmFailure when the body's ``messages`` (as JSON) exceed ``limit`` bytes."""
    size = len(json.dumps(body["messages"], ensure_ascii=False).encode())
    if size > limit:
        raise LlmFailure(
            TOO_LARGE,
            f"the prompt is {size} bytes, above the server's limit of {limit} "
            "(PLUGHOST_LLM_MAX_PROMPT_BYTES); it was not sent",
        )


class RateWindow:
    """At most ``per_minute`` calls per key in any 60 s (0: no bound); a sliding window of
    the call times, so each key keeps at most ``per_minute`` of them."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}

    def take(self, key: str) -> None:
        """Count one call of ``key``; LlmFailure (nothing counted) when it is over the bound."""
        if self.per_minute <= 0:
            return
        now = self._clock()
        calls = self._calls.setdefault(key, deque())
        while calls and calls[0] <= now - WINDOW_S:
            calls.popleft()
        if len(calls) >= self.per_minute:
            wait = max(1, math.ceil(calls[0] + WINDOW_S - now))
            raise LlmFailure(
                RATE_LIMITED,
                f"this namespace made {len(calls)} container.llm requests in the last "
                f"{WINDOW_S:g} s, the server's bound (PLUGHOST_LLM_REQUESTS_PER_MINUTE); "
                f"retry in {wait} s",
            )
        calls.append(now)


class LlmClient:
    """Requests to the configured endpoint; one connection pool for the server's life."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        """``transport``: tests give httpx's mock transport; None is the network."""
        self._base = settings.llm_base_url.strip().rstrip("/")
        self._key = settings.llm_api_key
        self._models = settings.llm_models
        self._timeout_s = settings.llm_timeout_s
        self._max_prompt = settings.llm_max_prompt_bytes
        self._rate = RateWindow(settings.llm_requests_per_minute)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout_s), transport=self._transport
            )
        return self._client

    @property
    def configured(self) -> bool:
        return bool(self._base)

    @property
    def has_key(self) -> bool:
        """Whether PLUGHOST_LLM_API_KEY is set (else the organization's secret is asked)."""
        return bool(self._key)

    async def generate(
        self, args: dict[str, Any], org_key: str | None = None, namespace: str = ""
    ) -> dict[str, Any]:
        """One call; LlmFailure with the reason when it cannot be made or answered. A prompt
        past PLUGHOST_LLM_MAX_PROMPT_BYTES, or a call past ``namespace``'s requests per
        minute, is refused before anything is sent."""
        if not self._base:
            raise not_configured()
        body = build_body(args, self._models)
        check_prompt_size(body, self._max_prompt)
        self._rate.take(namespace)
        key = self._key or org_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = f"{self._base}/chat/completions"
        import httpx

        try:
            response = await self._http().post(url, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise LlmFailure(
                "LLMTimeout", f"no answer from the LLM endpoint in time ({exc})"
            ) from exc
        except httpx.HTTPError as exc:
            raise LlmFailure(
                "LLMUnavailable", f"cannot reach PLUGHOST_LLM_BASE_URL ({self._base}): {exc}"
            ) from exc
        if response.status_code >= 400:
            raise LlmFailure(
                "LLMError",
                f"the LLM endpoint answered {response.status_code}: "
                f"{response.text[:MAX_ERROR_BODY]}",
            )
        try:
            answer = response.json()
        except ValueError as exc:
            raise LlmFailure("LLMResponseError", "the LLM endpoint's answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise LlmFailure("LLMResponseError", "the LLM endpoint's answer is not an object")
        return parse_answer(answer, "response_format" in body, args.get("provider"))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
