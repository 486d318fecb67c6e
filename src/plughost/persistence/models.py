"""The namespace_models rows, and which deployed plugins name a model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from plughost.domain.states import Status
from plughost.errors import ConflictError
from plughost.persistence.db import Database
from plughost.persistence.tables import NamespaceModel, Plugin, Release
from plughost.timeutil import utcnow


@dataclass(frozen=True)
class ModelRow:
    """One namespace model, detached from its session."""

    organization_id: str
    namespace_id: str
    model_id: str
    name: str
    version: str
    model_format: str
    framework: str | None
    task_type: str | None
    num_cpus: float | None
    num_gpus: int | None
    memory_gb: float | None
    sha256: str
    size_bytes: int
    archive_key: str
    deployed: bool
    source_namespace_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def uploaded_here(self) -> bool:
        return self.source_namespace_id is None


def _row(m: NamespaceModel) -> ModelRow:
    return ModelRow(
        organization_id=m.organization_id,
        namespace_id=m.namespace_id,
        model_id=m.model_id,
        name=m.name,
        version=m.version,
        model_format=m.model_format,
        framework=m.framework,
        task_type=m.task_type,
        num_cpus=m.num_cpus,
        num_gpus=m.num_gpus,
        memory_gb=m.memory_gb,
        sha256=m.sha256,
        size_bytes=m.size_bytes,
        archive_key=m.archive_key,
        deployed=m.deployed,
        source_namespace_id=m.source_namespace_id,
        created_at=m.created_at,
        updated_at=m.updated_at,
    )


class ModelRows:
    """Reads and writes of namespace_models; each method one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, row: ModelRow) -> ModelRow:
        """Insert ``row``; ConflictError when the namespace has the model id already."""
        try:
            with self.db.session() as s:
                s.add(NamespaceModel(**asdict(row)))
        except IntegrityError as exc:
            raise ConflictError(
                f"model {row.model_id} already exists in namespace {row.namespace_id}; "
                "delete it or upload a new version",
                {"model_id": row.model_id},
            ) from exc
        return row

    def get(self, organization_id: str, namespace_id: str, model_id: str) -> ModelRow | None:
        with self.db.session() as s:
            found = s.scalars(
                select(NamespaceModel).where(
                    NamespaceModel.organization_id == organization_id,
                    NamespaceModel.namespace_id == namespace_id,
                    NamespaceModel.model_id == model_id,
                )
            ).first()
            return _row(found) if found is not None else None

    def in_namespace(self, organization_id: str, namespace_id: str) -> list[ModelRow]:
        with self.db.session() as s:
            found = s.scalars(
                select(NamespaceModel)
                .where(
                    NamespaceModel.organization_id == organization_id,
                    NamespaceModel.namespace_id == namespace_id,
                )
                .order_by(NamespaceModel.created_at, NamespaceModel.id)
            )
            return [_row(m) for m in found]

    def of_namespace(self, namespace_id: str) -> list[ModelRow]:
        """The namespace's rows whatever its organization (the files' side: a namespace id
        names one folder)."""
        with self.db.session() as s:
            found = s.scalars(
                select(NamespaceModel)
                .where(NamespaceModel.namespace_id == namespace_id)
                .order_by(NamespaceModel.created_at, NamespaceModel.id)
            )
            return [_row(m) for m in found]

    def uploaded_in_org(self, organization_id: str) -> list[ModelRow]:
        """The organization's models: every upload to any of its namespaces, oldest first."""
        with self.db.session() as s:
            found = s.scalars(
                select(NamespaceModel)
                .where(
                    NamespaceModel.organization_id == organization_id,
                    NamespaceModel.source_namespace_id.is_(None),
                )
                .order_by(NamespaceModel.created_at, NamespaceModel.id)
            )
            return [_row(m) for m in found]

    def every(self) -> list[ModelRow]:
        with self.db.session() as s:
            return [_row(m) for m in s.scalars(select(NamespaceModel))]

    def remove(self, namespace_id: str, model_id: str) -> bool:
        with self.db.session() as s:
            found = s.scalars(
                select(NamespaceModel).where(
                    NamespaceModel.namespace_id == namespace_id,
                    NamespaceModel.model_id == model_id,
                )
            ).first()
            if found is None:
                return False
            s.delete(found)
            return True

    def set_deployed(self, namespace_id: str, model_id: str) -> None:
        with self.db.session() as s:
            found = s.scalars(
                select(NamespaceModel).where(
                    NamespaceModel.namespace_id == namespace_id,
                    NamespaceModel.model_id == model_id,
                )
            ).first()
            if found is not None:
                found.deployed, found.updated_at = True, utcnow()

    def sha_in_use(self, sha256: str) -> bool:
        with self.db.session() as s:
            return (
                s.scalars(
                    select(NamespaceModel.id).where(NamespaceModel.sha256 == sha256)
                ).first()
                is not None
            )

    def deployed_users(self, namespace_id: str, model_id: str) -> list[str]:
        """Plugin ids with a deployed release in the namespace whose code names the model
        (``plugins.model_refs``, recorded at intake), sorted."""
        with self.db.session() as s:
            found = s.execute(
                select(Plugin.plugin_id, Plugin.model_refs)
                .join(Release, Release.plugin_pk == Plugin.id)
                .where(
                    Release.namespace_id == namespace_id,
                    Release.status == Status.DEPLOYED.value,
                )
            ).all()
        return sorted({pid for pid, refs in found if _names(refs, model_id)})


def _names(refs: Any, model_id: str) -> bool:
    return isinstance(refs, list) and model_id in refs


def new_row(**fields: Any) -> ModelRow:
    """A row to insert: the timestamps now, not deployed."""
    now = utcnow()
    values = {"deployed": False, "created_at": now, "updated_at": now, **fields}
    return ModelRow(**values)


def namespaces_of(rows: Iterable[ModelRow]) -> set[str]:
    return {row.namespace_id for row in rows}
