"""HTTP client of the author's CLI: the namespace's plugin endpoints, errors turned into
CliError carrying the server's own message, and server-sent events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote

import httpx

from plughost.cli.author.errors import CliError

TIMEOUT_S = 60.0
SSE_TYPE = "text/event-stream"
NDJSON_TYPE = "application/x-ndjson"
STREAM_TYPES = (NDJSON_TYPE, SSE_TYPE)
SECRETS_PATH = "/v1/organizations/secrets"


@dataclass(frozen=True)
class Target:
    """Where the commands go: server URL, API key, namespace (and where the key came from,
    to print a curl line that does not show it)."""

    url: str
    api_key: str
    namespace: str
    key_source: str = "--api-key"

    @property
    def plugins_path(self) -> str:
        return f"/v1/namespaces/{quote(self.namespace, safe='')}/plugins"


def error_from_response(response: httpx.Response) -> CliError:
    """The server's error (the contract's shape) as a CliError; any other body as text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        kind = str(error.get("type") or "Error")
        return CliError(f"{kind}: {error['message']}", payload=body, error_type=kind)
    text = response.text.strip()[:500] or response.reason_phrase
    return CliError(f"HTTP {response.status_code}: {text}")


def sse_events(lines: Iterator[str]) -> Iterator[str]:
    """The data of each server-sent event (multi-line data joined with newlines)."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


class AuthorClient:
    """One server, one key, one namespace."""

    def __init__(self, target: Target, transport: httpx.BaseTransport | None = None) -> None:
        self.target = target
        self._http = httpx.Client(
            base_url=target.url.rstrip("/"),
            headers={"Authorization": f"Bearer {target.api_key}"},
            timeout=TIMEOUT_S,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; the decoded JSON body, or CliError with the server's message."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {self.target.url}: {exc}") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(f"the server answered {path} with no JSON: {exc}") from exc

    @contextmanager
    def stream(
        self, path: str, params: dict[str, Any], read_timeout_s: float | None = None
    ) -> Iterator[httpx.Response]:
        """A streamed GET (server-sent events when the server gives them). Errors while
        opening become CliError; those while reading (a read time-out) reach the caller."""
        timeout = httpx.Timeout(TIMEOUT_S, read=read_timeout_s)
        with ExitStack() as stack:
            try:
                response = stack.enter_context(
                    self._http.stream(
                        "GET", path, params=params, headers={"Accept": SSE_TYPE}, timeout=timeout
                    )
                )
                if response.status_code >= 400:
                    response.read()
            except httpx.HTTPError as exc:
                raise CliError(f"cannot reach {self.target.url}: {exc}") from exc
            if response.status_code >= 400:
                raise error_from_response(response)
            yield response

    def plugin_path(self, plugin_id: str, suffix: str = "") -> str:
        return f"{self.target.plugins_path}/{quote(plugin_id, safe='')}{suffix}"

    # -- endpoints -----------------------------------------------------------------------------
    def list_plugins(self) -> list[dict[str, Any]]:
        return list(self.request("GET", self.target.plugins_path).get("plugins") or [])

    def example_input(self, plugin_id: str) -> dict[str, Any] | None:
        """The stored manifest's ``example_input`` (None when it has none)."""
        plugin = self.request("GET", self.plugin_path(plugin_id)).get("plugin") or {}
        example = (plugin.get("manifest") or {}).get("example_input")
        return example if isinstance(example, dict) else None

    def status(self, plugin_id: str) -> dict[str, Any]:
        return dict(self.request("GET", self.plugin_path(plugin_id, "/status")))

    def deploy(self, plugin_id: str) -> dict[str, Any]:
        return dict(self.request("POST", self.plugin_path(plugin_id, "/deploy")))

    def undeploy(self, plugin_id: str) -> dict[str, Any]:
        return dict(self.request("POST", self.plugin_path(plugin_id, "/undeploy")))

    def delete(self, plugin_id: str) -> dict[str, Any]:
        return dict(self.request("DELETE", self.plugin_path(plugin_id)))

    def history(self, plugin_id: str, limit: int | None = None) -> dict[str, Any]:
        params = {"limit": limit} if limit is not None else {}
        path = self.plugin_path(plugin_id, "/deployments")
        return dict(self.request("GET", path, params=params))

    def logs(self, plugin_id: str, since: str | None, limit: int | None) -> dict[str, Any]:
        params = {k: v for k, v in {"since": since, "limit": limit}.items() if v is not None}
        return dict(self.request("GET", self.plugin_path(plugin_id, "/logs"), params=params))

    def rollback(self, name: str, version: str) -> dict[str, Any]:
        path = f"{self.target.plugins_path}/by-name/{quote(name, safe='')}/rollback"
        return dict(self.request("POST", path, json={"version": version}))

    @contextmanager
    def infer(self, route_prefix: str, body: dict[str, Any]) -> Iterator[InferAnswer]:
        """Call a plugin: its JSON answer, or (a streamed answer) its items as they arrive.
        Errors before the answer become CliError; an error mid-stream is StreamFailed."""
        with ExitStack() as stack:
            try:
                # no read limit of ours: the server ends a call at its deadline (504), and a
                # stream's items may be far apart
                response = stack.enter_context(self._http.stream(
                    "POST", route_prefix, json=body, timeout=httpx.Timeout(TIMEOUT_S, read=None)
                ))
                media = stream_media(response)
                if response.status_code >= 400 or media is None:
                    response.read()
            except httpx.HTTPError as exc:
                raise CliError(f"cannot reach {self.target.url}: {exc}") from exc
            if response.status_code >= 400:
                raise error_from_response(response)
            if media is None:
                try:
                    value = response.json()
                except ValueError as exc:
                    raise CliError(f"the server answered {route_prefix} with no JSON: {exc}") from exc
                yield InferAnswer(value=value)
            else:
                yield InferAnswer(items=stream_items(response, media == SSE_TYPE))

    def set_secret(self, name: str, value: str) -> bool:
        """Store an organization secret: create it, else (409) replace its value; True when
        it was created. Needs a key of the whole organization."""
        body = {"secret_name": name, "secret_value": value}
        try:
            self.request("POST", SECRETS_PATH, json=body)
        except CliError as exc:
            if exc.error_type != "ConflictError":
                raise
            path = f"{SECRETS_PATH}/{quote(name, safe='')}"
            self.request("PUT", path, json={"secret_value": value})
            return False
        return True

    def create_upload(self, name: str, version: str, size: int) -> dict[str, Any]:
        body = {"name": name, "version": version, "file_size_bytes": size}
        return dict(self.request("POST", f"{self.target.plugins_path}/uploads", json=body))

    def put_archive(self, presigned_url: str, data: bytes) -> str:
        """PUT the archive to its presigned URL (no API key: the URL is signed); its ETag."""
        try:
            response = httpx.put(
                presigned_url,
                content=data,
                headers={"Content-Type": "application/zip"},
                timeout=TIMEOUT_S,
            )
        except httpx.HTTPError as exc:
            raise CliError(f"cannot upload the archive: {exc}") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response.headers.get("ETag", "")

    def confirm_upload(self, upload_id: str, etag: str, size: int) -> dict[str, Any]:
        path = f"{self.target.plugins_path}/uploads/{quote(upload_id, safe='')}/confirm"
        body: dict[str, Any] = {"file_size_bytes": size}
        if etag:
            body["etag"] = etag
        return dict(self.request("POST", path, json=body))


@dataclass
class InferAnswer:
    """A plugin's answer: ``value`` (its JSON) when not streamed, else ``items`` (each
    item's JSON value, as it arrives)."""

    value: Any = None
    items: Iterator[Any] | None = None


class StreamFailed(CliError):
    """A streamed answer ended with an error (the contract's error body, as ``line``)."""

    def __init__(self, body: dict[str, Any], line: str) -> None:
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        kind = str(error.get("type") or "Error")
        super().__init__(f"{kind}: {error.get('message') or 'the stream failed'}",
                         payload=body, error_type=kind)
        self.line = line


def stream_media(response: httpx.Response) -> str | None:
    """The streamed media type of a response (NDJSON or server-sent events), else None."""
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return media if media in STREAM_TYPES else None


def _is_error(value: Any) -> bool:
    return isinstance(value, dict) and value.get("success") is False and "error" in value


def _sse_frames(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """``(event name, data)`` of each server-sent event (the name "message" when unnamed)."""
    name, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
    if data:
        yield name, "\n".join(data)


def stream_items(response: httpx.Response, events: bool) -> Iterator[Any]:
    """The items of a streamed answer, decoded, as they arrive: NDJSON lines, or the data of
    server-sent events up to ``event: end``. An error line or ``event: error`` raises
    StreamFailed; a broken connection or a line that is not JSON, CliError."""
    try:
        if events:
            frames: Iterator[tuple[str, str]] = _sse_frames(response.iter_lines())
        else:
            frames = (("message", line) for line in response.iter_lines() if line.strip())
        for name, data in frames:
            if name == "end":
                return
            try:
                value = json.loads(data)
            except ValueError as exc:
                raise CliError(f"the stream held a line that is not JSON: {data[:200]!r}") from exc
            if name == "error" or _is_error(value):
                body = value if isinstance(value, dict) else {"error": {"message": str(value)}}
                raise StreamFailed(body, data)
            yield value
    except httpx.HTTPError as exc:
        raise CliError(f"the stream broke off: {exc}") from exc


def decode_event(data: str) -> dict[str, Any] | None:
    """One event's JSON object; None for keep-alives and anything that is not an object."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
