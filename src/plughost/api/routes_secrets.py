"""Organization secrets: /v1/organizations/secrets (the SDK's ``OrganizationSecretsApi``).

Answers carry names and flags, never a value. Handlers are plain functions: FastAPI runs
them in its thread pool, where the service's database reads and decryption may block."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from plughost.api.deps import PrincipalDep, RuntimeDep
from plughost.services.secrets import MAX_SECRET_VALUE_CHARS, SECRET_NAME_PATTERN

router = APIRouter(prefix="/v1/organizations/secrets", tags=["organization secrets"])

SecretName = Annotated[
    str, Path(pattern=SECRET_NAME_PATTERN, description="the secret's name", max_length=100)
]
SecretValue = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_SECRET_VALUE_CHARS,
        description="the clear value; stored encrypted, never answered",
    ),
]


class CreateSecretRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    secret_name: str = Field(
        pattern=SECRET_NAME_PATTERN,
        max_length=100,
        description="unique within the organization: letters, digits, `_`, `.`, `-`",
    )
    secret_value: SecretValue


class UpdateSecretRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    secret_value: SecretValue


class SecretResponse(BaseModel):
    """What a change answers: the name and which change it was (never the value)."""

    secret_name: str
    created: bool | None = None
    updated: bool | None = None
    deleted: bool | None = None


class SecretsListResponse(BaseModel):
    secrets: list[str] = Field(description="the organization's secret names, sorted")
    count: int


@router.post("", status_code=201, response_model_exclude_none=True)
def create_secret(
    body: CreateSecretRequest, principal: PrincipalDep, rt: RuntimeDep
) -> SecretResponse:
    """Store a new secret of the caller's organization (409 when the name exists; 403 for
    a key limited to some namespaces)."""
    return _answer(rt.secrets.create(principal, body.secret_name, body.secret_value))


@router.get("")
def list_secrets(principal: PrincipalDep, rt: RuntimeDep) -> SecretsListResponse:
    """The names of the organization's secrets (403 for a key limited to namespaces)."""
    return SecretsListResponse(**rt.secrets.listing(principal))


@router.put("/{secret_name}", response_model_exclude_none=True)
def update_secret(
    secret_name: SecretName, body: UpdateSecretRequest, principal: PrincipalDep, rt: RuntimeDep
) -> SecretResponse:
    """Replace a secret's value (404 when unknown; 403 for a key limited to namespaces)."""
    return _answer(rt.secrets.update(principal, secret_name, body.secret_value))


@router.delete("/{secret_name}", response_model_exclude_none=True)
def delete_secret(
    secret_name: SecretName, principal: PrincipalDep, rt: RuntimeDep
) -> SecretResponse:
    """Delete a secret (404 when unknown; 403 for a key limited to namespaces)."""
    return _answer(rt.secrets.delete(principal, secret_name))


def _answer(result: dict[str, Any]) -> SecretResponse:
    return SecretResponse(**result)
