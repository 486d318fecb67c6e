"""Batch job rows: the one door for batch status changes (compare-and-set plus an event row)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from plughost.domain.batch_states import BatchStatus, can_move_batch
from plughost.persistence.db import Database
from plughost.persistence.tables import BatchJob, BatchJobEvent
from plughost.persistence.transitions import BATCHES
from plughost.timeutil import as_utc, utcnow


@dataclass(frozen=True)
class BatchView:
    """A detached, immutable copy of a batch job row."""

    id: str
    organization_id: str
    namespace_id: str
    plugin_pk: int
    plugin_id: str
    status: BatchStatus
    input_key: str
    input_format: str
    input_name: str | None
    input_owned: bool
    parameters: dict[str, Any]
    on_error: str
    rows_total: int | None
    rows_done: int
    rows_failed: int
    errors: list[dict[str, Any]]
    message: str | None
    output_key: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: BatchJob) -> BatchView:
        return cls(
            id=row.id,
            organization_id=row.organization_id,
            namespace_id=row.namespace_id,
            plugin_pk=row.plugin_pk,
            plugin_id=row.plugin_id,
            status=BatchStatus(row.status),
            input_key=row.input_key,
            input_format=row.input_format,
            input_name=row.input_name,
            input_owned=row.input_owned,
            parameters=dict(row.parameters or {}),
            on_error=row.on_error,
            rows_total=row.rows_total,
            rows_done=row.rows_done,
            rows_failed=row.rows_failed,
            errors=list(row.errors or []),
            message=row.message,
            output_key=row.output_key,
            created_at=as_utc(row.created_at),
            started_at=as_utc(row.started_at) if row.started_at else None,
            finished_at=as_utc(row.finished_at) if row.finished_at else None,
            updated_at=as_utc(row.updated_at),
        )


@dataclass(frozen=True)
class NewBatch:
    """What a client's submission fixes about a job."""

    id: str
    organization_id: str
    namespace_id: str
    plugin_pk: int
    plugin_id: str
    input_key: str
    input_format: str
    input_name: str | None
    input_owned: bool
    parameters: dict[str, Any]
    on_error: str


class Batches:
    """Queries, progress updates and compare-and-set transitions over the batch_jobs table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, new: NewBatch) -> BatchView:
        with self.db.session() as s:
            row = BatchJob(
                id=new.id,
                organization_id=new.organization_id,
                namespace_id=new.namespace_id,
                plugin_pk=new.plugin_pk,
                plugin_id=new.plugin_id,
                status=BatchStatus.QUEUED.value,
                input_key=new.input_key,
                input_format=new.input_format,
                input_name=new.input_name,
                input_owned=new.input_owned,
                parameters=new.parameters,
                on_error=new.on_error,
                rows_done=0,
                rows_failed=0,
                errors=[],
            )
            s.add(row)
            BATCHES.record(s, new.id, None, row.status, "submitted")
            s.flush()
            return BatchView.of(row)

    def get(self, batch_id: str) -> BatchView | None:
        with self.db.session() as s:
            row = s.get(BatchJob, batch_id)
            return BatchView.of(row) if row else None

    def in_namespace(self, namespace_id: str, plugin_id: str | None = None) -> list[BatchView]:
        with self.db.session() as s:
            query = select(BatchJob).where(BatchJob.namespace_id == namespace_id)
            if plugin_id is not None:
                query = query.where(BatchJob.plugin_id == plugin_id)
            rows = s.scalars(query.order_by(BatchJob.created_at.desc(), BatchJob.id)).all()
            return [BatchView.of(r) for r in rows]

    def with_status(self, statuses: set[BatchStatus]) -> list[BatchView]:
        with self.db.session() as s:
            rows = s.scalars(
                select(BatchJob)
                .where(BatchJob.status.in_([x.value for x in statuses]))
                .order_by(BatchJob.created_at, BatchJob.id)
            ).all()
            return [BatchView.of(r) for r in rows]

    def move(
        self,
        batch_id: str,
        expected: BatchStatus,
        target: BatchStatus,
        message: str | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set ``expected -> target`` (plus ``fields``) with an event row; whether
        this call made the change (False: the job was no longer in ``expected``)."""
        if not can_move_batch(expected, target):
            raise ValueError(f"batch status cannot move {expected} -> {target}")
        now = utcnow()
        values: dict[str, Any] = {"updated_at": now, **fields}
        if message is not None:
            values["message"] = message
        if target is BatchStatus.RUNNING:
            values.setdefault("started_at", now)
        if target in (BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED):
            values.setdefault("finished_at", now)
        with self.db.session() as s:
            return BATCHES.move(s, batch_id, expected, target, values, message)

    def progress(self, batch_id: str, **fields: Any) -> None:
        """Store counters (rows_total, rows_done, rows_failed, errors) of a running job."""
        with self.db.session() as s:
            s.execute(
                update(BatchJob)
                .where(BatchJob.id == batch_id, BatchJob.status == BatchStatus.RUNNING.value)
                .values(updated_at=utcnow(), **fields)
            )

    def events(self, batch_id: str) -> list[tuple[str | None, str, str | None]]:
        with self.db.session() as s:
            rows = s.scalars(
                select(BatchJobEvent)
                .where(BatchJobEvent.batch_id == batch_id)
                .order_by(BatchJobEvent.id)
            ).all()
            return [(r.from_status, r.to_status, r.message) for r in rows]
