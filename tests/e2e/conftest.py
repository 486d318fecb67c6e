from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ray_support import DB_KINDS, E2E_DB_KINDS, RAY_AVAILABLE, RAY_SKIP_REASON, RayHead

# Live servers run on SQLite, the embedded default: what a route stores is compared on both
# databases by the in-process and unit tiers (test_registry_http, test_routes_secrets,
# test_bootstrap_races, tests/unit/persistence). A live server adds PostgreSQL only where the
# database changes what the process does: restarts that restore from it (test_resilience,
# test_adoption, the restart legs of test_deployments, the lease handed over in
# test_takeover), servers sharing it (test_multiserver, test_concurrent_start, test_workers,
# test_ray_multiserver), the loop kept free of its sessions during uploads (test_upload_stall)
# and the SDK's models routes (test_models_sdk). Such a module overrides `db_kind` with one
# that returns `both_databases`.


@pytest.fixture(scope="session", params=E2E_DB_KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    """The database of the live-server tests: SQLite (overrides tests/conftest.py's)."""
    return str(request.param)


@pytest.fixture(scope="session", params=DB_KINDS)
def both_databases(request: pytest.FixtureRequest) -> str:
    """Every database kind of the run, for the modules where PostgreSQL changes the outcome."""
    return str(request.param)


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Ray head for the whole session (servers that join a cluster); its address."""
    if not RAY_AVAILABLE:
        pytest.skip(RAY_SKIP_REASON)
    head = RayHead(tmp_path_factory.mktemp("ray-head") / "head.log").start()
    try:
        yield head.address
    finally:
        head.stop()
