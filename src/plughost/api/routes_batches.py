"""Batch job endpoints: submit, presigned input upload, read, list, cancel."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartParser

from plughost.api.deps import NamespaceScope, RuntimeDep, base_url
from plughost.api.schemas import Expiration
from plughost.api.streams import (
    check_declared_length,
    check_form_fields,
    file_chunks,
    limited_stream,
    non_empty,
)
from plughost.batch.service import BatchService, Submission, check_submission
from plughost.errors import BadRequestError, PayloadTooLargeError, ValidationError

router = APIRouter(prefix="/v1/namespaces/{namespace_id}", tags=["batches"])
store_router = APIRouter(prefix="/v1/_store", tags=["archive store"])
BaseUrl = Annotated[str, Depends(base_url)]


def get_batches(rt: RuntimeDep) -> BatchService:
    return rt.batches.service


BatchesDep = Annotated[BatchService, Depends(get_batches)]


class InputUrlRequest(BaseModel):
    input_url: str
    parameters: dict[str, Any] | None = None
    on_error: str = "fail"  # checked by check_submission (fail | skip)


class InputUploadRequest(BaseModel):
    file_name: str | None = Field(default=None, description="helps tell the format apart")
    presigned_url_expiration: Expiration = 3600


def _form_json(value: Any) -> Any:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError("form field 'parameters' must be text holding a JSON object")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"form field 'parameters' is not JSON: {exc}") from exc


async def _parse_form(request: Request, limit: int) -> tuple[UploadFile, Submission]:
    parser = MultiPartParser(
        request.headers, limited_stream(request, limit), max_files=1, max_fields=10
    )
    try:
        form = await parser.parse()
    except PayloadTooLargeError:
        raise
    except Exception as exc:  # starlette raises its own MultiPartException for malformed bodies
        raise BadRequestError(f"malformed multipart body: {exc}") from exc
    check_form_fields((name for name, _ in form.multi_items()), ("file", "parameters", "on_error"))
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ValidationError("missing form field 'file' (the JSONL, CSV or Parquet input)")
    on_error = form.get("on_error")
    if on_error == "":  # given but empty is not "absent": the field takes fail or skip
        raise ValidationError("form field 'on_error' must be fail or skip, not empty")
    submission = check_submission(
        _form_json(form.get("parameters")), on_error if isinstance(on_error, str) else None
    )
    return upload, submission


@router.post("/plugins/{plugin_id:plugin_id}/batches", status_code=202)
async def submit_batch(
    scope: NamespaceScope, rt: RuntimeDep, batches: BatchesDep, plugin_id: str, request: Request
) -> dict[str, Any]:
    """Multipart (``file``, ``parameters``, ``on_error``) or JSON ``{"input_url", ...}``."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            body = InputUrlRequest.model_validate_json(await request.body())
        except ValueError as exc:
            raise ValidationError(f"invalid JSON body: {exc}") from exc
        submission = check_submission(body.parameters, body.on_error)
        return await run_in_threadpool(
            batches.submit_url, scope, plugin_id, body.input_url, submission
        )
    if not ctype.startswith("multipart/form-data"):
        raise BadRequestError(
            "expected multipart/form-data (file, parameters, on_error) or a JSON body with input_url"
        )
    limit = rt.settings.batch_max_input_bytes + rt.settings.multipart_overhead_bytes
    check_declared_length(request, limit)
    upload, submission = await _parse_form(request, limit)
    try:
        return await batches.submit_stream(
            scope, plugin_id, upload.filename, file_chunks(upload), submission
        )
    finally:
        await upload.close()


@router.post("/batches/uploads")
def create_input_upload(
    scope: NamespaceScope, batches: BatchesDep, body: InputUploadRequest, url: BaseUrl
) -> dict[str, Any]:
    """A presigned PUT URL for a large input; submit it afterwards with its ``input_url``."""
    return batches.create_input_upload(scope, body.file_name, body.presigned_url_expiration, url)


@router.get("/batches")
def list_namespace_batches(
    scope: NamespaceScope, batches: BatchesDep, url: BaseUrl
) -> dict[str, Any]:
    return batches.list(scope, None, url)


@router.get("/batches/{batch_id:batch_id}")
def get_namespace_batch(
    scope: NamespaceScope, batches: BatchesDep, batch_id: str, url: BaseUrl
) -> dict[str, Any]:
    return batches.get(scope, None, batch_id, url)


@router.delete("/batches/{batch_id:batch_id}")
def cancel_namespace_batch(
    scope: NamespaceScope, batches: BatchesDep, batch_id: str
) -> dict[str, Any]:
    return batches.cancel(scope, None, batch_id)


@router.get("/plugins/{plugin_id:plugin_id}/batches")
def list_batches(
    scope: NamespaceScope, batches: BatchesDep, plugin_id: str, url: BaseUrl
) -> dict[str, Any]:
    return batches.list(scope, plugin_id, url)


@router.get("/plugins/{plugin_id:plugin_id}/batches/{batch_id:batch_id}")
def get_batch(
    scope: NamespaceScope, batches: BatchesDep, plugin_id: str, batch_id: str, url: BaseUrl
) -> dict[str, Any]:
    return batches.get(scope, plugin_id, batch_id, url)


@router.delete("/plugins/{plugin_id:plugin_id}/batches/{batch_id:batch_id}")
def cancel_batch(
    scope: NamespaceScope, batches: BatchesDep, plugin_id: str, batch_id: str
) -> dict[str, Any]:
    return batches.cancel(scope, plugin_id, batch_id)


@store_router.put("/batch-inputs/{key:path}")
async def put_batch_input(
    key: str,
    request: Request,
    rt: RuntimeDep,
    batches: BatchesDep,
    expires: str | None = None,
    signature: str | None = None,
) -> Response:
    limit = rt.settings.batch_max_input_bytes
    full_key = f"batch-inputs/{key}"
    batches.signer.verify("PUT", f"/v1/_store/{full_key}", expires, signature)
    check_declared_length(request, limit)
    etag = await batches.receive_input(
        full_key, expires, signature, non_empty(limited_stream(request, limit))
    )
    return Response(status_code=200, headers={"ETag": etag})
