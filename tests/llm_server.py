"""A tiny OpenAI-compatible chat-completions server for tests, on loopback.

``POST /v1/chat/completions`` records every request (body and Authorization header) and
answers: with a ``response_format`` of type ``json_schema``, a JSON object built from the
schema (strings say what the user message held, booleans true, numbers 0.5, arrays
empty); otherwise ``"echo: <the user's text>"`` plus the number of images. A request whose
text holds ``FAIL500`` gets a 500. Started and stopped by the tests (a thread of the test
process), so nothing outside the machine is ever called.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _user_parts(body: dict[str, Any]) -> tuple[str, list[str]]:
    texts: list[str] = []
    images: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif part.get("type") == "image_url":
                images.append(str((part.get("image_url") or {}).get("url", "")))
    return "\n".join(texts), images


def _from_schema(schema: dict[str, Any], text: str) -> Any:
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _from_schema(sub, text) for name, sub in props.items()}
    if kind == "boolean":
        return True
    if kind in ("number", "integer"):
        return 0.5 if kind == "number" else 1
    if kind == "array":
        return []
    return f"about: {text}"


class _Listener(ThreadingHTTPServer):
    """A backlog of a real server's size: socketserver's default of 5 dropped connections of
    a burst (40 rows of a Ray Data job calling at once), which httpx saw as a ReadError."""

    request_queue_size = 1024
    daemon_threads = True


@dataclass
class LlmServer:
    """The server and what it was asked; :meth:`start` binds a free loopback port."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give as PLUGHOST_LLM_BASE_URL."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> LlmServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(400, {"error": "not JSON"})
                    return
                owner.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": "unknown path"})
                    return
                self._send(*owner.answer(body))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = _Listener(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text, images = _user_parts(body)
        if "FAIL500" in text:
            return 500, {"error": {"message": "the model is down"}}
        response_format = body.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema") or {}
            content = json.dumps(_from_schema(schema, text))
        else:
            content = f"echo: {text}" + (f" [{len(images)} images]" if images else "")
        return 200, {
            "id": "cmpl-test",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": len(text), "completion_tokens": len(content)},
        }

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
