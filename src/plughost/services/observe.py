"""Observation use cases: deployment history and logs of a plugin id.

Wire shapes: :mod:`plughost.api.routes_observe`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from plughost.domain.ids import alias_route_for
from plughost.domain.scope import PluginScope
from plughost.errors import BadRequestError
from plughost.logs import query
from plughost.logs.store import LogLine, LogStore
from plughost.persistence import history
from plughost.persistence.db import Database
from plughost.persistence.tables import Release
from plughost.services.plugins import find_plugin
from plughost.timeutil import iso

OUTCOMES = {
    "deployed": "deployed",
    "failed": "failed",
    "not_deployed": "undeployed",
    "superseded": "superseded",
}
MAX_RELEASES_READ = 50  # the logs endpoint reads the newest releases' files only


@dataclass(frozen=True)
class PluginKey:
    pk: int
    plugin_id: str
    name: str
    version: str
    namespace_id: str


class Observe:
    def __init__(self, db: Database, logs: LogStore | None) -> None:
        self.db = db
        self.logs = logs

    def plugin(self, scope: PluginScope, plugin_id: str) -> PluginKey:
        """The plugin id in the namespace (404 otherwise)."""
        assert scope.namespace_id is not None
        with self.db.session() as s:
            p = find_plugin(s, scope, plugin_id)
            return PluginKey(p.id, p.plugin_id, p.name, p.version, scope.namespace_id)

    # -- history ----------------------------------------------------------------------------
    def history(self, scope: PluginScope, plugin_id: str, limit: int) -> dict[str, Any]:
        if not 1 <= limit <= 200:
            raise BadRequestError("limit must be between 1 and 200")
        key = self.plugin(scope, plugin_id)
        rows = history.plugin_releases(self.db, key.namespace_id, key.pk, limit)
        target = history.alias_target(self.db, key.namespace_id, key.name)
        moves = history.alias_moves(self.db, key.namespace_id, key.name, limit)
        alias = None
        if target is not None:
            alias = {"name": key.name, "route": alias_route_for(key.namespace_id, key.name),
                     "release_id": target[0], "version": target[1]}
        return {
            "plugin_id": key.plugin_id,
            "namespace_id": key.namespace_id,
            "name": key.name,
            "version": key.version,
            "alias": alias,
            "deployments": [_release(r) for r in rows],
            "alias_moves": [
                {"time": iso(m.at), "name": m.name, "from_release_id": m.from_release_id,
                 "from_version": m.from_version, "to_release_id": m.to_release_id,
                 "to_version": m.to_version, "reason": m.reason}
                for m in moves
            ],
        }

    # -- logs -------------------------------------------------------------------------------
    def release_ids(self, key: PluginKey) -> list[int]:
        """The plugin id's newest releases in the namespace, oldest first."""
        with self.db.session() as s:
            ids = list(s.scalars(
                select(Release.id)
                .where(Release.namespace_id == key.namespace_id, Release.plugin_pk == key.pk)
                .order_by(Release.id.desc()).limit(MAX_RELEASES_READ)
            ))
        return sorted(ids)

    def log_lines(
        self, key: PluginKey, since: float | None, limit: int, release_id: int | None
    ) -> tuple[list[LogLine], bool]:
        """The window of lines the logs endpoint answers, and whether it is truncated."""
        if self.logs is None:
            return [], False
        ids = self.release_ids(key)
        if release_id is not None:
            ids = [i for i in ids if i == release_id]
        if since is not None:  # releases whose files were last written before `since` hold none
            ids = [i for i in ids if self.logs.last_write(i) >= since - 2.0]  # coarse mtimes
            return query.window(self.logs.read(ids), since, limit)
        lines: list[LogLine] = []
        for rid in reversed(ids):  # newest release first, until the window is full
            lines = self.logs.read([rid]) + lines
            if len(lines) > limit:
                break
        lines.sort(key=lambda e: e.time)
        return query.window(lines, None, limit)

    def logs_body(
        self, scope: PluginScope, plugin_id: str, since: str | None, limit: int,
        release_id: int | None,
    ) -> dict[str, Any]:
        key = self.plugin(scope, plugin_id)
        after = query.parse_since(since)
        lines, truncated = self.log_lines(key, after, query.check_limit(limit), release_id)
        next_since = query.iso_time(lines[-1].time) if lines else (
            query.iso_time(after) if after is not None else None)
        return {
            "plugin_id": key.plugin_id,
            "namespace_id": key.namespace_id,
            "lines": [query.wire(e) for e in lines],
            "truncated": truncated,
            "next_since": next_since,
        }


def _release(r: history.ReleaseRow) -> dict[str, Any]:
    events = []
    previous = None
    for ev in r.events:
        spent = (ev.at - previous).total_seconds() if previous is not None else None
        events.append({"time": iso(ev.at), "from": ev.from_status, "to": ev.to_status,
                       "message": ev.message, "duration_s": spent})
        previous = ev.at
    return {
        "release_id": r.id,
        "version": r.version,
        "status": r.status,
        "outcome": OUTCOMES.get(r.status, "running"),
        "queued_at": iso(r.queued_at),
        "started_at": iso(r.started_at),
        "deployed_at": iso(r.deployed_at),
        "finished_at": iso(r.finished_at),
        "duration_s": r.duration_s,
        "message": r.message,
        "error": r.error,
        "events": events,
    }
