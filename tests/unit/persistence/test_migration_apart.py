"""Migrations without alembic in the server: the head read from the migration files, the
at-head check, and the child process that migrates a new or older schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from plughost.persistence import db as dbmod
from plughost.persistence.db import Database, head_revision

pytestmark = pytest.mark.unit


def test_the_head_read_from_the_files_is_alembics_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(dbmod._MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()


def test_a_new_database_is_migrated_by_a_child_and_then_needs_nothing(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    assert not db.at_head()
    migration = db.start_migration()
    assert migration is not None
    migration.wait()
    assert db.at_head()
    with db.engine.connect() as conn:  # the tables are there, and WAL set by the child
        assert conn.execute(text("SELECT count(*) FROM plugins")).scalar() == 0
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert db.start_migration() is None
    db.dispose()


def test_a_failed_migration_is_an_error_quoting_the_child(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    with db.engine.begin() as conn:  # a revision these migrations do not know
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('9999')"))
    migration = db.start_migration()
    assert migration is not None
    with pytest.raises(RuntimeError, match="migrating the database failed: .*9999"):
        migration.wait()
    db.dispose()


def test_a_server_on_a_new_home_never_imports_what_only_others_need(tmp_path: Path) -> None:
    # alembic (migrations), cryptography (secrets), httpx and rich (peer calls, LLM calls,
    # the client commands), jinja2 (the dashboard page): each loaded when first needed, not by a server at start
    script = f"""
import sys
from pathlib import Path
from plughost.config import Settings
import plughost.cli.serve  # what `plughost serve` imports (plughost.cli.entry)
from plughost.api.app import create_app
from plughost.server.wiring import build_runtime
settings = Settings(home=Path({str(tmp_path / 'home')!r}))
create_app(settings)
runtime = build_runtime(settings)
assert runtime.db.at_head()
print(sorted(m for m in ("alembic", "cryptography", "httpx", "rich", "jinja2") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]
