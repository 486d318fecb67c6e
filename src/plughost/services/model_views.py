"""The wire bodies of a namespace model (the SDK's ``ModelListItem`` and
``CustomModelDocument``)."""

from __future__ import annotations

from typing import Any

from plughost.persistence.models import ModelRow
from plughost.timeutil import iso

_GIB = 1024**3


def list_item(row: ModelRow) -> dict[str, Any]:
    return {
        "model_id": row.model_id,
        "name": row.name,
        "version": row.version,
        "model_format": row.model_format,
        "framework": row.framework,
        "task_type": row.task_type,
        "deployed": row.deployed,
        "endpoint": None,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def detail_body(row: ModelRow, archive_url: str) -> dict[str, Any]:
    return {
        "model_id": row.model_id,
        "namespace_id": row.namespace_id,
        "name": row.name,
        "version": row.version,
        "model_archive_url": archive_url,
        "model_format": row.model_format,
        "model_hash": row.sha256,
        "deployed": row.deployed,
        "deployment_info": None,
        "framework": row.framework,
        "task_type": row.task_type,
        "input_schema": None,
        "output_schema": None,
        "resource_requirements": resources(row),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        # plughost's own: the unpacked size and where an enabled organization model came from
        "size_bytes": row.size_bytes,
        "source_namespace_id": row.source_namespace_id,
    }


def resources(row: ModelRow) -> dict[str, Any]:
    """ModelResourceRequirements: what was declared, else the SDK's defaults."""
    num_cpus: float | int = row.num_cpus if row.num_cpus is not None else 1
    if isinstance(num_cpus, float) and num_cpus.is_integer():
        num_cpus = int(num_cpus)  # the SDK's int branch wants whole CPUs as an int
    return {
        "num_cpus": num_cpus,
        "num_gpus": row.num_gpus if row.num_gpus is not None else 0,
        "memory": int(row.memory_gb * _GIB) if row.memory_gb is not None else 4 * _GIB,
    }
