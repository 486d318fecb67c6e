"""Request-body streaming with a byte limit, and multipart parsing that spools to disk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartParser

from plughost.errors import BadRequestError, PayloadTooLargeError, ValidationError

_CHUNK = 1 << 20


def check_declared_length(request: Request, limit: int) -> None:
    """Refuse at once (413) a body whose Content-Length already exceeds the limit."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"request body of {declared} bytes exceeds the limit of {limit} bytes",
            {"max_bytes": limit},
        )


async def limited_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body, raising PayloadTooLargeError as soon as more than `limit` bytes came."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLargeError(
                f"request body exceeds the limit of {limit} bytes", {"max_bytes": limit}
            )
        if chunk:
            yield chunk


async def non_empty(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks``, raising BadRequestError (400) when they hold no byte at all."""
    empty = True
    async for chunk in chunks:
        empty = empty and not chunk
        yield chunk
    if empty:
        raise BadRequestError("request body is empty: PUT the file's bytes")


async def file_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    await upload.seek(0)
    while chunk := await upload.read(_CHUNK):
        yield chunk


def check_form_fields(present: Iterable[str], known: tuple[str, ...]) -> None:
    """422 for a form field the route does not read (the OpenAPI document lists them) or
    one given more than once; ``present``: the name of every part, repeats included."""
    names = list(present)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValidationError(
            f"unknown form field(s): {', '.join(map(repr, unknown))}; this form takes "
            f"{', '.join(known)}",
            {"unknown": unknown},
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValidationError(
            f"form field(s) given more than once: {', '.join(map(repr, repeated))}",
            {"repeated": repeated},
        )


@dataclass
class PluginForm:
    file: UploadFile
    name: str
    version: str
    description: str | None


async def parse_plugin_form(request: Request, limit: int) -> PluginForm:
    """Parse the multipart upload form; the file part spools to disk, never whole in memory."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise BadRequestError("expected a multipart/form-data body with fields file, name, version")
    parser = MultiPartParser(
        request.headers,
        limited_stream(request, limit),
        max_files=1,
        max_fields=10,
    )
    try:
        form = await parser.parse()
    except PayloadTooLargeError:
        raise
    except Exception as exc:  # starlette raises its own MultiPartException for malformed bodies
        raise BadRequestError(f"malformed multipart body: {exc}") from exc
    check_form_fields(
        (name for name, _ in form.multi_items()), ("file", "name", "version", "description")
    )
    missing = [f for f in ("file", "name", "version") if f not in form]
    if missing:
        raise ValidationError(f"missing form field(s): {', '.join(missing)}", {"missing": missing})
    upload, name, version = form.get("file"), form.get("name"), form.get("version")
    description = form.get("description")
    if not isinstance(upload, UploadFile):
        raise ValidationError("form field 'file' must be a file")
    if not isinstance(name, str) or not isinstance(version, str):
        raise ValidationError("form fields 'name' and 'version' must be text")
    if description is not None and not isinstance(description, str):
        raise ValidationError("form field 'description' must be text")
    return PluginForm(upload, name, version, description or None)
