"""Wire schemas of namespace models (the SDK's ``CustomModelsApi``): the enable request, the
answers (so the OpenAPI document names their fields), the upload form, and each route's
error statuses for :mod:`plughost.api.openapi`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from plughost.api.schemas import JSON_NUMBER
from plughost.archive.model_formats import MODEL_FORMATS
from plughost.domain.ids import MODEL_VERSION_PATTERN, NAME_PATTERN

MODELS = "/v1/namespaces/{namespace_id}/models"
MID = MODELS + "/{model_id}"
MODEL_LIMIT = 5 * 1024**3  # Settings.model_max_bytes' default
# what a model id always is: {name}_{version}, the version's `.` and `-` as `_`
MODEL_ID_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_]{2,63}_[A-Za-z0-9][A-Za-z0-9_]{0,31}$"
# the media type the document gives the archive part (tests/e2e/openapi_fuzz_hooks.py
# draws model archives for it)
MODEL_ARCHIVE_TYPE = "application/gzip"
ModelFormat = Literal["safetensors", "onnx", "pytorch", "huggingface"]


class ResourceOverrides(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # bounds before the validator, so that they stay in the JSON schema
    num_cpus: Annotated[float, Field(ge=0.1, le=64), JSON_NUMBER] | None = None
    num_gpus: Annotated[int, Field(ge=0, le=8), JSON_NUMBER] | None = None
    memory: Annotated[int, Field(gt=0, description="bytes"), JSON_NUMBER] | None = None


class EnableModelRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    deploy: StrictBool = Field(default=False, description="preload it at once")
    resource_overrides: ResourceOverrides | None = None


class ModelUploadAnswer(BaseModel):
    success: bool
    model_id: str = Field(description="`{name}_{version}`, `.` and `-` as `_`")
    deployment_status: Literal["deployed", "pending", "failed", "not_deployed"]
    endpoint: str = Field(description="the model's resource (models are loaded by plugins)")
    model_archive_url: str = Field(description="where the archive is stored (file:// or s3://)")


class ModelListItem(BaseModel):
    model_id: str
    name: str
    version: str
    model_format: ModelFormat
    framework: str | None = None
    task_type: str | None = None
    deployed: bool
    endpoint: str | None = None
    created_at: str
    updated_at: str


class ModelListAnswer(BaseModel):
    success: bool = True
    models: list[ModelListItem]
    total: int
    namespace_id: str


class ModelResources(BaseModel):
    num_cpus: int | float
    num_gpus: int
    memory: int = Field(description="bytes")


class ModelDocument(BaseModel):
    model_id: str
    namespace_id: str
    name: str
    version: str
    model_archive_url: str
    model_format: ModelFormat
    model_hash: str = Field(description="SHA-256 of the uploaded archive")
    deployed: bool
    deployment_info: dict[str, Any] | None = None
    framework: str | None = None
    task_type: str | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    resource_requirements: ModelResources
    created_at: str
    updated_at: str
    size_bytes: int = Field(description="bytes of the unpacked files")
    source_namespace_id: str | None = Field(
        default=None, description="an organization model enabled here: the namespace it came from"
    )


class ModelDetailAnswer(BaseModel):
    success: bool = True
    model: ModelDocument


class ModelDeleteAnswer(BaseModel):
    success: bool = True
    model_id: str
    message: str


class ModelDeployAnswer(BaseModel):
    success: bool
    model_id: str
    namespace_id: str
    deployment_status: str
    cached: bool
    message: str


class AvailableModel(BaseModel):
    model_id: str
    name: str
    version: str
    model_format: ModelFormat
    description: str | None = None
    framework: str | None = None
    task_type: str | None = None
    enabled_in_namespace: bool


class AvailableModelsAnswer(BaseModel):
    success: bool = True
    models: list[AvailableModel]
    total: int
    namespace_id: str


class EnableModelAnswer(BaseModel):
    success: bool
    model_id: str
    namespace_id: str
    deployment_status: Literal["deployed", "skipped"]
    message: str


class DisableModelAnswer(BaseModel):
    success: bool
    model_id: str
    namespace_id: str
    message: str


# the form's required text parts (plain text, as every multipart text part is)
REQUIRED_TEXT = ("name", "version", "model_format")
FORM_FIELDS = (
    "file", "name", "version", "model_format", "framework", "task_type", "num_cpus",
    "num_gpus", "memory_gb",
)

MODEL_REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", MODELS): {
        "required": True,
        "description": "A model archive (tar.gz; zip also read) and what it is. At most "
        f"{MODEL_LIMIT} bytes (PLUGHOST_MODEL_MAX_BYTES) for the archive and for what it "
        "unpacks to; 413 past it. Its files must be the declared format (422 naming the file).",
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["file", "name", "version", "model_format"],
            "properties": {
                "file": {
                    "type": "string", "format": "binary", "maxLength": MODEL_LIMIT,
                    "description": "a tar.gz (zip is read too) of the model's files in the "
                    "declared format; other content answers 422 ValidationError",
                },
                "name": {"type": "string", "pattern": NAME_PATTERN},
                "version": {"type": "string", "pattern": MODEL_VERSION_PATTERN},
                "model_format": {"type": "string", "enum": list(MODEL_FORMATS)},
                "framework": {"type": "string", "maxLength": 100},
                "task_type": {"type": "string", "maxLength": 100},
                "num_cpus": {"type": "number", "minimum": 0.1, "maximum": 64},
                "num_gpus": {"type": "integer", "minimum": 0, "maximum": 8},
                "memory_gb": {"type": "number", "exclusiveMinimum": 0, "maximum": 4096},
            },
        }, "encoding": {
            "file": {"contentType": MODEL_ARCHIVE_TYPE},
            **{field: {"contentType": "text/plain"} for field in REQUIRED_TEXT},
        }}},
    },
}

MODEL_ERRORS: dict[tuple[str, str], list[int]] = {
    ("post", MODELS): [400, 401, 404, 409, 413, 422, 503],
    ("get", MODELS): [401, 404],
    ("get", MODELS + "/available"): [401, 404],
    ("post", MODELS + "/org/{model_id}/enable"): [400, 401, 404, 409, 422, 503],
    ("post", MODELS + "/org/{model_id}/disable"): [401, 404, 409],
    ("get", MID): [401, 404],
    ("delete", MID): [401, 404, 409, 503],
    ("post", MID + "/deploy"): [401, 404, 503],
}
