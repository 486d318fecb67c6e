"""The one door for status changes of a table with a status column: a compare-and-set
(``UPDATE ... WHERE id = :id AND status = :expected``) plus an event row (time, from, to,
message) in the same transaction.

A row moves only from the status its writer last saw: of two writers racing, one wins and
the other learns it lost (``False``), so no status is ever decided twice. The event row is
written in the same transaction, so the history never misses or invents a change.
Which moves are legal is the domain's rule (:mod:`plughost.domain.states`,
:mod:`plughost.domain.batch_states`), checked by the callers before they open the door.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from plughost.persistence.tables import BatchJob, BatchJobEvent, Release, ReleaseEvent


@dataclass(frozen=True)
class StatusDoor:
    """The door of one table: ``rows`` has ``id`` and ``status`` columns; ``events`` rows
    carry ``from_status``, ``to_status``, ``message`` and the row's id as ``key``."""

    rows: Any
    events: Any
    key: str

    def move(
        self,
        s: Session,
        row_id: Any,
        expected: str,
        to: str,
        values: dict[str, Any],
        message: str | None,
    ) -> bool:
        """Set ``status = to`` and ``values`` on the row if it is still in ``expected``, and
        add the event row; whether this call made the change. Runs in the caller's
        transaction (``s``), which commits or rolls back both together."""
        result = s.execute(
            update(self.rows)
            .where(self.rows.id == row_id, self.rows.status == str(expected))
            .values(status=str(to), **values)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        self.record(s, row_id, expected, to, message)
        return True

    def record(
        self, s: Session, row_id: Any, before: str | None, to: str, message: str | None
    ) -> None:
        """Add the event row of a change (``before`` None: the row was just created)."""
        s.add(
            self.events(
                **{self.key: row_id},
                from_status=None if before is None else str(before),
                to_status=str(to),
                message=message,
            )
        )


RELEASES = StatusDoor(Release, ReleaseEvent, "release_id")
BATCHES = StatusDoor(BatchJob, BatchJobEvent, "batch_id")
