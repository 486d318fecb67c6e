"""Inserts that several servers may run at the same moment on one database.

Servers starting together each try to create the same start-up rows (the default
organization, its namespace, the bootstrap key, the URL-signing secret). A plain INSERT after
a "does it exist?" read lets two of them pass the read and one of them die on the unique
constraint. Here the database decides: the row is inserted unless a row with the same key is
there (``ON CONFLICT ... DO NOTHING``), then the stored row is read back, so every server
ends up using the row that won, whichever it was.

On PostgreSQL an insert that meets another transaction's uncommitted row with the same key
waits for that transaction; once it commits, the insert does nothing, and the read back (a
new snapshot under READ COMMITTED) sees the winner. On SQLite the insert takes the
database's write lock, which is held until commit, so the read back sees the latest row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session

Row = TypeVar("Row", bound=DeclarativeBase)


def _insert(session: Session, model: type[DeclarativeBase]) -> Any:
    """The dialect's INSERT construct that knows ``ON CONFLICT``."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise ValueError(f"no insert-or-ignore for the {dialect!r} database")


def insert_or_ignore(
    session: Session,
    model: type[DeclarativeBase],
    values: Mapping[str, Any],
    conflict: Sequence[str],
) -> bool:
    """Insert ``values`` unless a row with the same ``conflict`` columns (a primary key or a
    unique constraint) exists; True when this call inserted it. A clash on any other
    constraint still raises."""
    columns = model.__table__.columns
    stmt = _insert(session, model).values(**values)
    stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    # RETURNING says whether a row went in: the rowcount of an ORM-enabled insert is not
    # reliable across drivers
    returned = session.execute(stmt.returning(*(columns[name] for name in conflict))).first()
    return returned is not None


def ensure_row(
    session: Session, model: type[Row], values: Mapping[str, Any], conflict: Sequence[str]
) -> Row:
    """The stored row whose ``conflict`` columns equal those of ``values``: the one this call
    inserted, or the one another session wrote first (its other columns win over ours)."""
    insert_or_ignore(session, model, values, conflict)
    columns = model.__table__.columns
    query = select(model).where(*(columns[name] == values[name] for name in conflict))
    # populate_existing: a row this session had loaded before is read again from the table
    return session.scalars(query.execution_options(populate_existing=True)).one()
