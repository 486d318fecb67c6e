"""Release rows: the one door for status changes (compare-and-set plus an event row)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from plughost.domain.release import ReleaseView
from plughost.domain.states import Status, can_move
from plughost.persistence.board import DURATIONS_KEPT, PluginReleases, ReleaseBoard
from plughost.persistence.db import Database
from plughost.persistence.history import record_alias_move
from plughost.persistence.tables import Alias, Plugin, Release
from plughost.persistence.transitions import RELEASES
from plughost.timeutil import as_utc, utcnow

# Run inside a controller write's transaction; raises to refuse the write (the lease fence of
# plughost.cluster.election when several servers share the database).
Fence = Callable[[Any], None]
_SEEN_KEPT = 10_000


def _view(row: Release) -> ReleaseView:
    """A detached copy of ``row``."""
    return ReleaseView(
        id=row.id,
        namespace_id=row.namespace_id,
        plugin_pk=row.plugin_pk,
        plugin_id=row.plugin_id,
        name=row.name,
        version=row.version,
        status=Status(row.status),
        message=row.message,
        error=row.error,
        queued_at=as_utc(row.queued_at),
        started_at=as_utc(row.started_at) if row.started_at else None,
        deployed_at=as_utc(row.deployed_at) if row.deployed_at else None,
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
        rollout=dict(row.rollout) if row.rollout else None,
    )


class Releases:
    """Queries and compare-and-set transitions over the releases table.

    Every write also updates :attr:`board`, the in-memory read model of the status endpoint;
    writes are serialised so the board sees them in commit order.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.board = ReleaseBoard()
        self._write_lock = threading.Lock()
        # the last view of each release the board was told about: another server's write
        # reaches the board through refresh(), which skips what the board already has
        self._seen: dict[int, ReleaseView] = {}

    def enqueue(
        self,
        namespace_id: str,
        plugin: Plugin,
        message: str,
        rollout: dict[str, Any] | None = None,
    ) -> ReleaseView:
        with self._write_lock:
            view = self._insert(namespace_id, plugin, message, rollout)
            self._tell_board(view)
            return view

    def _insert(
        self, namespace_id: str, plugin: Plugin, message: str, rollout: dict[str, Any] | None
    ) -> ReleaseView:
        with self.db.session() as s:
            row = Release(
                namespace_id=namespace_id,
                plugin_pk=plugin.id,
                plugin_id=plugin.plugin_id,
                name=plugin.name,
                version=plugin.version,
                status=Status.QUEUED.value,
                message=message,
                queued_at=utcnow(),
                rollout=rollout,
            )
            s.add(row)
            s.flush()
            RELEASES.record(s, row.id, None, row.status, message)
            return _view(row)

    def move(
        self,
        release_id: int,
        expected: Status,
        to: Status,
        message: str | None = None,
        error: str | None = None,
        fence: Fence | None = None,
        alias_reason: str | None = None,
        **times: Any,
    ) -> bool:
        """Compare-and-set `expected -> to`; False when the row had moved on meanwhile.
        ``fence`` runs first in the same transaction and may refuse the write by raising;
        ``alias_reason``: also point the name's alias at this release, in that transaction
        (so no server ever reads the release deployed and its alias still elsewhere)."""
        if not can_move(expected, to):
            raise ValueError(f"illegal transition {expected} -> {to}")
        values: dict[str, Any] = dict(times)
        if message is not None:
            values["message"] = message
        if error is not None:
            values["error"] = error
        with self._write_lock:
            view = self._update(
                release_id, expected, to, values, error or message, fence, alias_reason
            )
            if view is None:
                return False
            self._tell_board(view, times.get("duration_s"))
            return True

    def _update(
        self, release_id: int, expected: Status, to: Status, values: dict[str, Any],
        note: str | None, fence: Fence | None = None, alias_reason: str | None = None,
    ) -> ReleaseView | None:
        """The compare-and-set and its event row in one transaction; the moved row or None."""
        with self.db.session() as s:
            if fence is not None:
                fence(s)
            if not RELEASES.move(s, release_id, expected, to, values, note):
                return None
            row = s.get(Release, release_id, populate_existing=True)
            if row is not None and alias_reason is not None:
                self._point_alias(s, row.namespace_id, row.name, row.id, alias_reason)
            return _view(row) if row is not None else None

    def note(
        self, release_id: int, status: Status, message: str, fence: Fence | None = None
    ) -> bool:
        """Replace the status message of a release still in ``status`` (an event row records
        it); False when the release has moved on."""
        with self._write_lock:
            view = self._update(release_id, status, status, {"message": message}, message, fence)
            if view is None:
                return False
            self._tell_board(view)
            return True

    def _tell_board(self, view: ReleaseView, duration_s: float | None = None) -> None:
        if len(self._seen) > _SEEN_KEPT:
            self._seen.clear()
        self._seen[view.id] = view
        self.board.changed(view, duration_s)

    def refresh(self, release_id: int) -> ReleaseView | None:
        """Another server wrote the release: read it and tell the board, unless the board
        already has this very view (our own write coming back as a notification)."""
        with self._write_lock:
            view = self.get(release_id)
            if view is not None and self._seen.get(release_id) != view:
                self._tell_board(view, None)
            return view

    def undeploy(
        self, namespace_id: str, plugin_pk: int, message: str = "undeployed"
    ) -> list[tuple[Status, ReleaseView]]:
        """Desired state "nothing of this plugin runs in the namespace", in one transaction:
        its queued, rolling and deployed releases move to not_deployed (compare-and-set, an
        event row each), and an alias that named one of them follows the newest other
        deployed version of its name (or is cleared; an AliasMove row records it). The
        controller's next tick stops whatever still runs them. Returns (previous status,
        moved release) pairs."""
        live = (Status.QUEUED, Status.PENDING, Status.IN_PROGRESS, Status.DEPLOYED)
        with self._write_lock:
            with self.db.session() as s:
                rows = s.scalars(
                    select(Release).where(
                        Release.namespace_id == namespace_id,
                        Release.plugin_pk == plugin_pk,
                        Release.status.in_([x.value for x in live]),
                    ).order_by(Release.id)
                ).all()
                moved: list[tuple[Status, int]] = []
                for row in rows:
                    before = Status(row.status)
                    values = {"message": message, "finished_at": utcnow()}
                    if RELEASES.move(s, row.id, before, Status.NOT_DEPLOYED, values, message):
                        moved.append((before, row.id))
                gone = {rid for _, rid in moved}
                for name in sorted({row.name for row in rows}):
                    self._follow_newest(s, namespace_id, name, gone)
                views = [(before, s.get(Release, rid, populate_existing=True))
                         for before, rid in moved]
                result = [(before, _view(row)) for before, row in views if row is not None]
            for _, view in result:
                self._tell_board(view)
            return result

    @staticmethod
    def _follow_newest(s: Any, namespace_id: str, name: str, gone: set[int]) -> None:
        """If the alias of ``name`` names a release in ``gone``, point it at the newest
        deployed release of the name, or clear it."""
        row = s.get(Alias, (namespace_id, name))
        if row is None or row.release_id not in gone:
            return
        newest = s.scalars(
            select(Release.id).where(
                Release.namespace_id == namespace_id,
                Release.name == name,
                Release.status == Status.DEPLOYED.value,
            ).order_by(Release.deployed_at.desc()).limit(1)
        ).first()
        record_alias_move(s, namespace_id, name, row.release_id, newest, "undeploy")
        if newest is None:
            s.delete(row)
        else:
            row.release_id, row.updated_at = newest, utcnow()

    def forget_plugin(self, plugin_pk: int) -> None:
        """The plugin row was deleted and its releases with it (ON DELETE CASCADE)."""
        with self._write_lock:
            self.board.forget_plugin(plugin_pk)

    # -- status reads: the board first, the database once per key ----------------------------
    def plugin_releases(self, namespace_id: str, plugin_pk: int) -> PluginReleases:
        """Latest and deployed releases of a plugin in a namespace."""
        key = (namespace_id, plugin_pk)
        hit = self.board.plugin(key)
        if hit is not None:
            return hit
        stamp = self.board.plugin_stamp(key)
        value = PluginReleases(
            self.latest(namespace_id, plugin_pk),
            tuple(self.of_plugin(namespace_id, plugin_pk, {Status.DEPLOYED})),
        )
        self.board.install_plugin(key, stamp, value)
        return value

    def queue_position_now(self, release_id: int) -> int:
        """:meth:`queue_position`, from the board once the queue is loaded."""
        hit = self.board.queue_position(release_id)
        if hit is not None:
            return hit
        stamp = self.board.queue_stamp()
        ids = [r.id for r in self.with_status({Status.QUEUED})]
        self.board.install_queue(stamp, ids)
        return sum(1 for i in ids if i < release_id) + 1

    def recent_durations_now(self, name: str | None) -> tuple[float, ...]:
        """:meth:`recent_durations`, from the board once loaded for ``name``."""
        hit = self.board.durations(name)
        if hit is not None:
            return hit
        stamp = self.board.durations_stamp()
        values = tuple(self.recent_durations(name))
        self.board.install_durations(name, stamp, values)
        return values

    def get(self, release_id: int) -> ReleaseView | None:
        with self.db.session() as s:
            row = s.get(Release, release_id)
            return _view(row) if row else None

    def _select(
        self, *where: Any, order: Any = None, limit: int | None = None
    ) -> list[ReleaseView]:
        with self.db.session() as s:
            q = select(Release).where(*where).order_by(order if order is not None else Release.id)
            if limit:
                q = q.limit(limit)
            return [_view(r) for r in s.scalars(q)]

    def latest(self, namespace_id: str, plugin_pk: int) -> ReleaseView | None:
        rows = self._select(
            Release.namespace_id == namespace_id,
            Release.plugin_pk == plugin_pk,
            order=Release.id.desc(),
            limit=1,
        )
        return rows[0] if rows else None

    def of_plugin(
        self, namespace_id: str, plugin_pk: int, statuses: set[Status]
    ) -> list[ReleaseView]:
        return self._select(
            Release.namespace_id == namespace_id,
            Release.plugin_pk == plugin_pk,
            Release.status.in_([s.value for s in statuses]),
        )

    def serving_plugin_pks(self, namespace_id: str) -> set[int]:
        with self.db.session() as s:
            return set(s.scalars(select(Release.plugin_pk).where(
                Release.namespace_id == namespace_id, Release.status == Status.DEPLOYED.value)))

    def with_status(self, statuses: set[Status] | frozenset[Status]) -> list[ReleaseView]:
        return self._select(Release.status.in_([s.value for s in statuses]))

    def queue_position(self, release_id: int) -> int:
        """1-based position among queued releases."""
        with self.db.session() as s:
            ahead = s.scalar(
                select(func.count())
                .select_from(Release)
                .where(Release.status == Status.QUEUED.value, Release.id < release_id)
            )
            return int(ahead or 0) + 1

    def recent_durations(self, name: str | None, limit: int = DURATIONS_KEPT) -> list[float]:
        """Durations of the last ``limit`` rollouts to finish (of ``name``, or of any), newest
        first: the order in which the board records them."""
        with self.db.session() as s:
            q = select(Release.duration_s).where(Release.duration_s.is_not(None))
            if name is not None:
                q = q.where(Release.name == name)
            q = q.order_by(Release.deployed_at.desc(), Release.id.desc()).limit(limit)
            return [float(d) for d in s.scalars(q)]

    def deployed_of_name(self, namespace_id: str, name: str) -> list[ReleaseView]:
        return self._select(
            Release.namespace_id == namespace_id,
            Release.name == name,
            Release.status == Status.DEPLOYED.value,
            order=Release.deployed_at.desc(),
        )

    # -- aliases ------------------------------------------------------------------------------
    def aliases(self) -> dict[tuple[str, str], int]:
        """Every alias: (namespace_id, name) -> release id (the controller's desired routes)."""
        with self.db.session() as s:
            return {(a.namespace_id, a.name): a.release_id for a in s.scalars(select(Alias))}

    def alias(self, namespace_id: str, name: str) -> int | None:
        with self.db.session() as s:
            row = s.get(Alias, (namespace_id, name))
            return row.release_id if row else None

    def set_alias(
        self, namespace_id: str, name: str, release_id: int | None, reason: str = "deploy",
        fence: Fence | None = None,
    ) -> None:
        """Point the alias at a release (None: clear it); a change is recorded as an
        AliasMove (``reason``: deploy, rollback or undeploy) in the same transaction."""
        with self.db.session() as s:
            if fence is not None:
                fence(s)
            self._point_alias(s, namespace_id, name, release_id, reason)

    @staticmethod
    def _point_alias(
        s: Any, namespace_id: str, name: str, release_id: int | None, reason: str
    ) -> None:
        row = s.get(Alias, (namespace_id, name))
        record_alias_move(s, namespace_id, name, row.release_id if row else None,
                          release_id, reason)
        if release_id is None:
            if row is not None:
                s.delete(row)
        elif row is None:
            s.add(Alias(namespace_id=namespace_id, name=name, release_id=release_id))
        else:
            row.release_id, row.updated_at = release_id, utcnow()

