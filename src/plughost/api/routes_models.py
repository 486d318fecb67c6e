"""Namespace models: /v1/namespaces/{namespace_id}/models (the SDK's ``CustomModelsApi``).

The upload reads its multipart body itself (the archive spools to disk, never whole in
memory) and takes it in off the event loop behind the intake gate; the other handlers are
plain functions FastAPI runs in its thread pool (database reads, file work)."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Body, Path, Request
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartParser

from plughost.api.deps import NamespaceScope, RuntimeDep
from plughost.api.model_schemas import (
    FORM_FIELDS,
    MODEL_ID_PATTERN,
    AvailableModelsAnswer,
    DisableModelAnswer,
    EnableModelAnswer,
    EnableModelRequest,
    ModelDeleteAnswer,
    ModelDeployAnswer,
    ModelDetailAnswer,
    ModelListAnswer,
    ModelUploadAnswer,
)
from plughost.api.streams import check_declared_length, check_form_fields, limited_stream
from plughost.errors import BadRequestError, PayloadTooLargeError, ValidationError
from plughost.services.model_upload import ModelForm


class _ModelIdConvertor(Convertor[str]):
    """A model id is always ``{name}_{version}``: ``/models/available`` is never taken for
    one, so its other methods answer 405 with the right ``Allow``."""

    regex = MODEL_ID_PATTERN.strip("^$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("model_id", _ModelIdConvertor())

ModelId = Annotated[str, Path(pattern=MODEL_ID_PATTERN, description="`{name}_{version}`")]

router = APIRouter(prefix="/v1/namespaces/{namespace_id}/models", tags=["namespace models"])


@router.post("")
async def upload_model(
    scope: NamespaceScope, rt: RuntimeDep, request: Request
) -> ModelUploadAnswer:
    """Upload a model archive to the namespace (stored once per content: an archive already
    stored is not stored again); `model_id` is `{name}_{version}` with `.` and `-` as `_`."""
    limit = rt.settings.model_max_bytes + rt.settings.multipart_overhead_bytes
    check_declared_length(request, limit)
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise BadRequestError(
            "expected a multipart/form-data body with fields file, name, version, model_format"
        )
    parser = MultiPartParser(
        request.headers, limited_stream(request, limit), max_files=1, max_fields=12
    )
    try:
        form = await parser.parse()
    except PayloadTooLargeError:
        raise
    except Exception as exc:  # starlette raises its own MultiPartException for malformed bodies
        raise BadRequestError(f"malformed multipart body: {exc}") from exc
    try:
        check_form_fields((name for name, _ in form.multi_items()), FORM_FIELDS)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationError("form field 'file' must be a file", {"missing": ["file"]})
        fields = {k: v for k, v in form.multi_items() if k != "file"}
        texts = {k: v for k, v in fields.items() if isinstance(v, str)}
        if len(texts) != len(fields):
            raise ValidationError("form fields other than 'file' must be text")
        model_form = _model_form(texts)
        answer = await rt.models.upload(scope, model_form, upload.file)
    finally:
        await form.close()
    return ModelUploadAnswer(**answer)


def _model_form(texts: dict[str, str]) -> ModelForm:
    missing = [f for f in ("name", "version", "model_format") if f not in texts]
    if missing:
        raise ValidationError(f"missing form field(s): {', '.join(missing)}", {"missing": missing})
    return ModelForm(
        name=texts["name"],
        version=texts["version"],
        model_format=texts["model_format"],
        framework=texts.get("framework") or None,
        task_type=texts.get("task_type") or None,
        num_cpus=_number(texts, "num_cpus", float),
        num_gpus=_number(texts, "num_gpus", int),
        memory_gb=_number(texts, "memory_gb", float),
    )


def _number(texts: dict[str, str], field: str, kind: type[int | float]) -> float | None:
    text = texts.get(field)
    if text is None or text == "":
        return None
    try:
        value = kind(text)
    except ValueError as exc:
        raise ValidationError(f"{field} must be a number, not {text!r}", {"field": field}) from exc
    if not math.isfinite(value):
        raise ValidationError(f"{field} must be a finite number", {"field": field})
    return value


@router.get("")
def list_models(scope: NamespaceScope, rt: RuntimeDep) -> ModelListAnswer:
    """The namespace's models (uploaded here or enabled from the organization)."""
    return ModelListAnswer(**rt.models.listing(scope))


@router.get("/available")
def list_available_models(scope: NamespaceScope, rt: RuntimeDep) -> AvailableModelsAnswer:
    """The organization's models (those uploaded to any of its namespaces), each with
    whether this namespace has it."""
    return AvailableModelsAnswer(**rt.models.available(scope))


@router.post("/org/{model_id:model_id}/enable")
def enable_org_model(
    scope: NamespaceScope,
    rt: RuntimeDep,
    model_id: ModelId,
    body: Annotated[EnableModelRequest | None, Body()] = None,
) -> EnableModelAnswer:
    """Make an organization model (uploaded to another namespace) loadable here: same
    archive and files, no copy; `deploy: true` preloads it."""
    body = body or EnableModelRequest()
    overrides = (
        body.resource_overrides.model_dump(exclude_none=True) if body.resource_overrides else None
    )
    return EnableModelAnswer(**rt.models.enable(scope, model_id, body.deploy, overrides))


@router.post("/org/{model_id:model_id}/disable")
def disable_org_model(scope: NamespaceScope, rt: RuntimeDep, model_id: ModelId) -> DisableModelAnswer:
    """Remove an organization model enabled here (409 for a model uploaded here: delete it;
    409 while a deployed plugin of the namespace names it)."""
    return DisableModelAnswer(**rt.models.disable(scope, model_id))


@router.get("/{model_id:model_id}")
def get_model(scope: NamespaceScope, rt: RuntimeDep, model_id: ModelId) -> ModelDetailAnswer:
    """One model: format, SHA-256 of its archive, archive URL, deployed, resources."""
    return ModelDetailAnswer(**rt.models.detail(scope, model_id))


@router.delete("/{model_id:model_id}")
def delete_model(scope: NamespaceScope, rt: RuntimeDep, model_id: ModelId) -> ModelDeleteAnswer:
    """Delete a model from the namespace; 409 naming the plugins while a deployed plugin of
    the namespace names it in its code (ids computed at run time are not seen)."""
    return ModelDeleteAnswer(**rt.models.delete(scope, model_id))


@router.post("/{model_id:model_id}/deploy")
def deploy_model(scope: NamespaceScope, rt: RuntimeDep, model_id: ModelId) -> ModelDeployAnswer:
    """Preload: the model's files in place on this machine and read once into the page
    cache, so the next replica maps them at once."""
    return ModelDeployAnswer(**rt.models.deploy(scope, model_id))
