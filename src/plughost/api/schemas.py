"""Request bodies of the wire contract (responses are shaped in services/views).

Integers and booleans take what JSON Schema calls one, as the OpenAPI document says: an
integer field takes `3` and `3.0`, not `false` or `"3"`; a boolean field takes only `true`
and `false`. Names and versions carry the patterns the services enforce."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from plughost.domain.ids import NAME_PATTERN, VERSION_PATTERN

_IGNORE = ConfigDict(extra="ignore")


def _json_integer(value: Any) -> Any:
    """Refuse what JSON Schema's integer and number refuse and pydantic's lax mode takes."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number")  # noqa: TRY004 - pydantic reports ValueError
    return value


JSON_NUMBER = BeforeValidator(_json_integer)
JsonInt = Annotated[int, JSON_NUMBER]
# a JSON number: 3 and 3.5, not `false` or `"3"` (the same check: bool and str are refused)
JsonNumber = Annotated[float, JSON_NUMBER]
# bounds before the validator, so that they stay minimum/maximum in the JSON schema
FileSize = Annotated[int, Field(ge=0, le=524_288_000), JSON_NUMBER]
Expiration = Annotated[int, Field(ge=60, le=86400), JSON_NUMBER]


class CreateUploadRequest(BaseModel):
    model_config = _IGNORE
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(
        pattern=VERSION_PATTERN, description="X.Y.Z; also accepted v1, 1, 1.0 (normalised)"
    )
    description: str | None = Field(default=None, max_length=500)
    file_size_bytes: FileSize | None = None
    presigned_url_expiration: Expiration = 3600


class ConfirmUploadRequest(BaseModel):
    model_config = _IGNORE
    etag: str | None = None
    file_size_bytes: Annotated[int, Field(ge=0), JSON_NUMBER] | None = None


class EnableRequest(BaseModel):
    model_config = _IGNORE
    params: dict[str, Any] | None = None
    deploy: StrictBool = True


class RealtimeTestRequest(BaseModel):
    model_config = _IGNORE
    inputs: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = _IGNORE
    inference_name: str | None = None
    feature_uri: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)


class RollbackRequest(BaseModel):
    model_config = _IGNORE
    version: str = Field(pattern=VERSION_PATTERN)
