"""Deployment history reads: a plugin's releases with their event rows, and alias moves."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from plughost.persistence.db import Database
from plughost.persistence.tables import Alias, AliasMove, Release, ReleaseEvent
from plughost.timeutil import as_utc


@dataclass(frozen=True)
class EventRow:
    at: datetime
    from_status: str | None
    to_status: str
    message: str | None


@dataclass(frozen=True)
class ReleaseRow:
    id: int
    version: str
    status: str
    message: str | None
    error: str | None
    queued_at: datetime
    started_at: datetime | None
    deployed_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    events: tuple[EventRow, ...]


@dataclass(frozen=True)
class AliasMoveRow:
    at: datetime
    name: str
    from_release_id: int | None
    from_version: str | None
    to_release_id: int | None
    to_version: str | None
    reason: str


def record_alias_move(
    s: Session, namespace_id: str, name: str, from_id: int | None, to_id: int | None,
    reason: str,
) -> None:
    """Add an AliasMove row when the target changes (inside the caller's transaction)."""
    if from_id == to_id:
        return
    versions = dict(s.execute(
        select(Release.id, Release.version).where(Release.id.in_([from_id or 0, to_id or 0]))
    ).all())
    s.add(AliasMove(
        namespace_id=namespace_id, name=name, from_release_id=from_id,
        from_version=versions.get(from_id or 0), to_release_id=to_id,
        to_version=versions.get(to_id or 0), reason=reason,
    ))


def _opt(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def plugin_releases(db: Database, namespace_id: str, plugin_pk: int, limit: int) -> list[ReleaseRow]:
    """The plugin's newest ``limit`` releases in the namespace, newest first, with events."""
    with db.session() as s:
        rows = list(s.scalars(
            select(Release)
            .where(Release.namespace_id == namespace_id, Release.plugin_pk == plugin_pk)
            .order_by(Release.id.desc()).limit(limit)
        ))
        events: dict[int, list[EventRow]] = {r.id: [] for r in rows}
        if rows:
            for ev in s.scalars(
                select(ReleaseEvent).where(ReleaseEvent.release_id.in_(list(events)))
                .order_by(ReleaseEvent.id)
            ):
                events[ev.release_id].append(
                    EventRow(as_utc(ev.at), ev.from_status, ev.to_status, ev.message))
        return [
            ReleaseRow(
                r.id, r.version, r.status, r.message, r.error, as_utc(r.queued_at),
                _opt(r.started_at), _opt(r.deployed_at), _opt(r.finished_at), r.duration_s,
                tuple(events[r.id]),
            )
            for r in rows
        ]


def alias_moves(db: Database, namespace_id: str, name: str, limit: int) -> list[AliasMoveRow]:
    """The newest ``limit`` moves of the alias, newest first."""
    with db.session() as s:
        return [
            AliasMoveRow(as_utc(m.at), m.name, m.from_release_id, m.from_version,
                         m.to_release_id, m.to_version, m.reason)
            for m in s.scalars(
                select(AliasMove)
                .where(AliasMove.namespace_id == namespace_id, AliasMove.name == name)
                .order_by(AliasMove.id.desc()).limit(limit)
            )
        ]


def alias_target(db: Database, namespace_id: str, name: str) -> tuple[int, str] | None:
    """(release id, version) the alias reaches, or None."""
    with db.session() as s:
        row = s.get(Alias, (namespace_id, name))
        if row is None:
            return None
        version = s.scalar(select(Release.version).where(Release.id == row.release_id))
        return (row.release_id, version) if version is not None else None


def release_counts(db: Database) -> Counter[str]:
    """Releases per status (for the deployments-by-status gauge)."""
    with db.session() as s:
        return Counter(dict(s.execute(
            select(Release.status, func.count()).group_by(Release.status)
        ).all()))
