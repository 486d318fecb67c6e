"""Request bodies of the wire contract (responses are shaped in services/views)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CreateUploadRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    version: str
    description: str | None = Field(default=None, max_length=500)
    file_size_bytes: int | None = Field(default=None, ge=0, le=524_288_000)
    presigned_url_expiration: int = Field(default=3600, ge=60, le=86400)


class ConfirmUploadRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    etag: str | None = None
    file_size_bytes: int | None = Field(default=None, ge=0)


class EnableRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    params: dict[str, Any] | None = None
    deploy: bool = True


class RealtimeTestRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    inputs: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    inference_name: str | None = None
    feature_uri: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    version: str
