"""The lease row of the controller on PostgreSQL (see plughost.cluster.election for why).

Every time is the database's own clock (``now()``), so servers with skewed clocks agree on
when a lease expired. Taking a lease over increments its epoch; a controller write runs
:meth:`SqlLeases.check` in its own transaction, which reads the row ``FOR SHARE``: a
takeover (an UPDATE of that row) waits for the write to commit, and a write after the
takeover sees the new epoch and is refused. So no write of an old leader lands after a new
leader started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from plughost.persistence.db import Database


class LeaseLost(Exception):
    """This server no longer holds the lease it acts under: the write was refused."""


@dataclass(frozen=True)
class LeaseInfo:
    holder: str
    epoch: int
    address: str
    expired: bool


_ACQUIRE = text(
    """
    INSERT INTO leases (name, holder, epoch, address, expires_at)
    VALUES (:name, :holder, 1, :address, now() + make_interval(secs => :ttl))
    ON CONFLICT (name) DO UPDATE
       SET holder = EXCLUDED.holder, epoch = leases.epoch + 1,
           address = EXCLUDED.address, expires_at = EXCLUDED.expires_at
     WHERE leases.expires_at <= now()
    RETURNING epoch
    """
)
_RECLAIM = text(
    "UPDATE leases SET holder = :holder, epoch = epoch + 1, "
    "expires_at = now() + make_interval(secs => :ttl) "
    "WHERE name = :name AND epoch = :epoch AND address = :address RETURNING epoch"
)
_RENEW = text(
    "UPDATE leases SET expires_at = now() + make_interval(secs => :ttl) "
    "WHERE name = :name AND holder = :holder AND epoch = :epoch RETURNING epoch"
)
_RELEASE = text(
    "UPDATE leases SET expires_at = now() "
    "WHERE name = :name AND holder = :holder AND epoch = :epoch"
)
_READ = text(
    "SELECT holder, epoch, address, expires_at <= now() AS expired FROM leases WHERE name = :name"
)
_CHECK = text(
    "SELECT 1 FROM leases WHERE name = :name AND holder = :holder AND epoch = :epoch "
    "AND expires_at > now() FOR SHARE"
)


class SqlLeases:
    """Acquire, renew, release and check a named lease in the ``leases`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def acquire(self, name: str, holder: str, address: str, ttl_s: float) -> int | None:
        """The new epoch when the lease was free or expired; None while another holds it."""
        with self.db.session() as s:
            row = s.execute(
                _ACQUIRE, {"name": name, "holder": holder, "address": address, "ttl": ttl_s}
            ).first()
            return int(row[0]) if row is not None else None

    def reclaim(self, name: str, holder: str, address: str, epoch: int, ttl_s: float) -> int | None:
        """Take over, before it expires, a lease at ``epoch`` held at our own ``address``
        (an earlier process of this server that died); the new epoch, or None when the
        lease moved on meanwhile."""
        with self.db.session() as s:
            row = s.execute(
                _RECLAIM,
                {"name": name, "holder": holder, "address": address, "epoch": epoch, "ttl": ttl_s},
            ).first()
            return int(row[0]) if row is not None else None

    def renew(self, name: str, holder: str, epoch: int, ttl_s: float) -> bool:
        """Extend the lease; False when it was taken over (the epoch moved on)."""
        with self.db.session() as s:
            row = s.execute(
                _RENEW, {"name": name, "holder": holder, "epoch": epoch, "ttl": ttl_s}
            ).first()
            return row is not None

    def release(self, name: str, holder: str, epoch: int) -> None:
        """Expire the lease now (a clean shutdown), so another server takes over at once."""
        with self.db.session() as s:
            s.execute(_RELEASE, {"name": name, "holder": holder, "epoch": epoch})

    def read(self, name: str) -> LeaseInfo | None:
        with self.db.session() as s:
            row = s.execute(_READ, {"name": name}).first()
            if row is None:
                return None
            return LeaseInfo(str(row[0]), int(row[1]), str(row[2]), bool(row[3]))

    @staticmethod
    def check(session: Any, name: str, holder: str, epoch: int) -> None:
        """Inside a write's transaction: raise LeaseLost unless ``holder`` still holds the
        lease at ``epoch`` and it has not expired (the row stays share-locked until commit)."""
        row = session.execute(_CHECK, {"name": name, "holder": holder, "epoch": epoch}).first()
        if row is None:
            raise LeaseLost(f"lease {name!r} epoch {epoch} is no longer held by this server")
