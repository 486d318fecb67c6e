"""``python -m plughost.persistence.migrate``: bring the database named by
``PLUGHOST_MIGRATE_DATABASE_URL`` to head, then exit (``Database.start_migration``)."""

from __future__ import annotations

import os
import sys

from plughost.persistence.db import MIGRATE_URL_ENV, Database


def main() -> int:
    db = Database(os.environ[MIGRATE_URL_ENV])
    try:
        db.migrate()
    except Exception as exc:  # noqa: BLE001 - any failure: the parent quotes this line
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
