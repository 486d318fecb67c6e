"""The ``namespace_policies`` rows (migration 0010): read whole, written one namespace at a
time, and a cheap stamp of the table that tells a server when another one (or the admin
CLI) changed it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from plughost.domain.batch_states import BATCH_ACTIVE, BatchStatus
from plughost.domain.quotas import FIELDS, NamespacePolicy
from plughost.errors import NotFoundError
from plughost.persistence.db import Database, read_retrying
from plughost.persistence.tables import BatchJob, Namespace, NamespacePolicyRow
from plughost.timeutil import iso, utcnow

Stamp = tuple[int, str | None]


def _policy(row: NamespacePolicyRow) -> NamespacePolicy:
    return NamespacePolicy(
        namespace_id=row.namespace_id,
        max_replicas=row.max_replicas,
        max_memory_mb=row.max_memory_mb,
        max_batch_jobs=row.max_batch_jobs,
        requests_per_second=row.requests_per_second,
        key_requests_per_second=row.key_requests_per_second,
        egress_allow=tuple(row.egress_allow or ()),
        updated_at=iso(row.updated_at),
    )


class PolicyRows:
    def __init__(self, db: Database) -> None:
        self.db = db

    def load_all(self) -> dict[str, NamespacePolicy]:
        def read() -> dict[str, NamespacePolicy]:
            with self.db.session() as s:
                rows = s.scalars(select(NamespacePolicyRow)).all()
                return {row.namespace_id: _policy(row) for row in rows}

        return read_retrying(read)

    def stamp(self) -> Stamp:
        """How many rows and the newest change: what a server compares to know whether to
        read the table again (one small aggregate query)."""

        def read() -> Stamp:
            with self.db.session() as s:
                count, newest = s.execute(
                    select(func.count(), func.max(NamespacePolicyRow.updated_at))
                ).one()
                return int(count), str(newest) if newest is not None else None

        return read_retrying(read)

    def put(self, namespace_id: str, fields: dict[str, Any]) -> NamespacePolicy:
        """Set the given (checked) fields of the namespace's policy; the others stay.
        NotFoundError when there is no such namespace."""
        with self.db.session() as s:
            if s.get(Namespace, namespace_id) is None:
                raise NotFoundError(
                    f"no namespace {namespace_id!r}", {"namespace_id": namespace_id}
                )
            row = s.get(NamespacePolicyRow, namespace_id)
            if row is None:
                row = NamespacePolicyRow(namespace_id=namespace_id)
                s.add(row)
            for name in FIELDS:
                if name in fields:
                    setattr(row, name, fields[name])
            row.updated_at = utcnow()
            s.flush()
            return _policy(row)

    def get(self, namespace_id: str) -> NamespacePolicy:
        """The namespace's policy (no limit when it has no row); NotFoundError when there
        is no such namespace."""
        with self.db.session() as s:
            if s.get(Namespace, namespace_id) is None:
                raise NotFoundError(
                    f"no namespace {namespace_id!r}", {"namespace_id": namespace_id}
                )
            row = s.get(NamespacePolicyRow, namespace_id)
            return _policy(row) if row is not None else NamespacePolicy(namespace_id)

    def active_batch_jobs(self, namespace_id: str) -> int:
        """Batch jobs of the namespace queued or running."""
        with self.db.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(BatchJob)
                    .where(
                        BatchJob.namespace_id == namespace_id,
                        BatchJob.status.in_([st.value for st in BATCH_ACTIVE]),
                    )
                )
                or 0
            )

    def running_batch_jobs(self) -> dict[str, int]:
        """Running batch jobs per namespace (for /metrics)."""
        with self.db.session() as s:
            rows = s.execute(
                select(BatchJob.namespace_id, func.count())
                .where(BatchJob.status == BatchStatus.RUNNING.value)
                .group_by(BatchJob.namespace_id)
            ).all()
            return {ns: int(n) for ns, n in rows}
