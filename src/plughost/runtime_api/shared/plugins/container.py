"""``shared.plugins.container``: the ``container`` a plugin gets, by Mixpeek's names.

``build_steps(extractor_request, container=...)`` and ``extract(...)`` receive
:data:`container` in batch jobs; a realtime service reaches the same object as
``self.container``. It offers:

- ``await container.secrets.get(name)`` -> the value (None when the organization has no
  secret of that name); ``await container.secrets.list()`` -> the names;
- ``await container.llm.generate(instruction=, text= | images=[urls], provider=, model=,
  schema=None)`` -> :class:`LLMResponse` (``.data``: the parsed JSON when ``schema`` is
  given, else the text); ``await container.llm.process(request)``, the same call taking an
  :class:`LLMRequest` (or a dict, or any object with those attributes);
- ``container.inference.get(name)`` and ``container.models.get(name)`` raise
  :class:`ContainerError` saying what plughost offers instead.

The plugin process has no network. Each call is handed to the process that hosts the
plugin (the replica, the batch worker), which sends it over its authenticated channel to
the server; the server reads the secret or makes the LLM call with a key the plugin never
sees. The coroutines run on whatever event loop the plugin uses: its own
``asyncio.new_event_loop()``, ``asyncio.run``, or the replica's loop in an ``async`` handler.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from plughost.domain.container import (
    LLM_GENERATE,
    SECRETS_GET,
    SECRETS_LIST,
    UNAVAILABLE,
    reply_parts,
)
from plughost.runtime_api import container_transport

OFFERED = "container.secrets (get, list) and container.llm (generate, process)"
MAX_INLINE_IMAGE_BYTES = 20 << 20


class ContainerError(RuntimeError):
    """A container call failed; ``type`` names the failure (``LLMNotConfigured``,
    ``ContainerTimeout``, ``LLMError``, ...), the message says why."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type = type_name
        self.message = message


async def _call(target: str, args: dict[str, Any]) -> Any:
    transport = container_transport.current()
    if transport is None:
        raise ContainerError(
            UNAVAILABLE,
            "no plughost server behind this process: container calls work in a deployed "
            "plugin, a batch job, `plughost test` and `plughost batch`",
        )
    reply = await asyncio.wrap_future(transport({"target": target, "args": args}))
    ok, result, type_name, message = reply_parts(reply)
    if not ok:
        raise ContainerError(type_name, message)
    return result


class Secrets:
    """The organization's secrets, read through the server (values are never cached here)."""

    async def get(self, name: str) -> str | None:
        if not isinstance(name, str) or not name:
            raise ValueError("a secret name is a non-empty string")
        value = await _call(SECRETS_GET, {"name": name})
        return value if isinstance(value, str) else None

    async def list(self) -> list[str]:
        names = await _call(SECRETS_LIST, {})
        return [str(n) for n in names] if isinstance(names, list) else []


@dataclass
class LLMRequest:
    """One LLM call: ``text`` and/or ``images`` (URLs) under an ``instruction``; ``schema``
    asks for JSON matching it. ``options`` go to the endpoint (temperature, max_tokens,
    top_p, seed)."""

    instruction: str | None = None
    text: str | None = None
    images: list[str] | None = None
    provider: str | None = None
    model: str | None = None
    schema: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LLMResponse:
    """What ``generate`` returns: ``data`` (parsed JSON with a schema, else the text)."""

    data: Any
    text: str = ""
    model: str = ""
    provider: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return True


def _inline_image(ref: str) -> str:
    """A ``file://`` URL or absolute path becomes a data URL (the LLM endpoint cannot read
    the plugin's files); any other reference is passed on as it is."""
    parsed = urlparse(ref)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"image {ref!r} names another host")
        path = Path(unquote(parsed.path))
    elif not parsed.scheme and ref.startswith("/"):
        path = Path(ref)
    else:
        return ref
    data = path.read_bytes()
    if len(data) > MAX_INLINE_IMAGE_BYTES:
        raise ValueError(f"image {ref!r} is larger than {MAX_INLINE_IMAGE_BYTES} bytes")
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _request_args(request: Any) -> dict[str, Any]:
    if isinstance(request, dict):
        get: Callable[[str], Any] = request.get
    else:

        def get(name: str) -> Any:
            return getattr(request, name, None)

    images = get("images")
    if isinstance(images, str):
        images = [images]
    args = {
        "instruction": get("instruction"),
        "text": get("text"),
        "images": [_inline_image(str(i)) for i in images or []],
        "provider": get("provider"),
        "model": get("model"),
        "schema": get("schema") if get("schema") is not None else get("response_schema"),
        "options": dict(get("options") or {}),
    }
    if not args["text"] and not args["images"] and not args["instruction"]:
        raise ValueError("an LLM call needs an instruction, text or images")
    return args


class LLM:
    """LLM calls through the server's OpenAI-compatible endpoint (``PLUGHOST_LLM_BASE_URL``)."""

    async def generate(
        self,
        instruction: str | None = None,
        text: str | None = None,
        images: list[str] | None = None,
        provider: str | None = None,
        model: str | None = None,
        schema: dict[str, Any] | None = None,
        **options: Any,
    ) -> LLMResponse:
        request = LLMRequest(instruction, text, images, provider, model, schema, options)
        return await self.process(request)

    async def process(self, request: Any) -> LLMResponse:
        result = await _call(LLM_GENERATE, _request_args(request))
        result = result if isinstance(result, dict) else {}
        return LLMResponse(
            data=result.get("data"),
            text=str(result.get("text") or ""),
            model=str(result.get("model") or ""),
            provider=result.get("provider"),
            usage=dict(result.get("usage") or {}),
        )

    @property
    def service(self) -> LLM:
        """Mixpeek's direct service handle; here the accessor itself."""
        return self


class NotOffered:
    """``container.inference`` and ``container.models``: nothing behind them on plughost."""

    def __init__(self, what: str, instead: str) -> None:
        self._what = what
        self._instead = instead

    def get(self, name: str) -> Any:
        raise ContainerError(
            UNAVAILABLE,
            f"container.{self._what}.get({name!r}): plughost has no {self._what} service; this "
            f"server offers {OFFERED}. {self._instead}",
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get


class PluginContainer:
    """The ``container`` object (one per process)."""

    def __init__(self) -> None:
        self.secrets = Secrets()
        self.llm = LLM()
        self.inference = NotOffered(
            "inference",
            "A batch pipeline calls another plugin deployed in its namespace through "
            "get_batch_service(name) from shared.inference.registry.",
        )
        self.models = NotOffered(
            "models",
            "Load the namespace's models with load_namespace_model(model_id) from "
            "engine.models (LazyModelMixin and lazy_model load them on first use).",
        )

    def __repr__(self) -> str:
        return "<plughost container: secrets, llm>"


container = PluginContainer()


def get_container() -> PluginContainer:
    """The process's container (the object ``build_steps`` and ``self.container`` give)."""
    return container


__all__ = [
    "LLM",
    "ContainerError",
    "LLMRequest",
    "LLMResponse",
    "PluginContainer",
    "Secrets",
    "container",
    "get_container",
]
