"""Shared fixtures (live servers on SQLite and PostgreSQL) and the suite's tiers.

Every test gets the marker of its tier from its folder (``unit``, ``integration``, ``e2e``,
``security``, and ``bench`` for the harness smoke that ``make bench-smoke`` runs); ``postgres`` when it runs against PostgreSQL, ``ray`` when it needs a Ray
cluster. Under pytest-xdist (``--dist loadgroup``) a module's tests stay on one worker, so its
module-scoped server starts once, and every Ray test shares one worker and its Ray head."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import LiveServer, create_pg_database, drop_pg_database

# Fails a test during which an app run in this process stalled its event loop (the live
# servers' logs are checked by LiveServer.stop()).
pytest_plugins = ["loopcheck"]

TESTS = Path(__file__).resolve().parent
TIER_OF_FOLDER = {"unit": "unit", "integration": "integration", "e2e": "e2e",
                  "security": "security", "bench": "bench"}
RAY_FIXTURES = {"ray_head", "ray_server", "ray_cluster"}

DB_KINDS = [k for k in os.environ.get("PLUGHOST_TEST_DBS", "sqlite,postgres").split(",") if k]


@pytest.fixture(scope="session", params=DB_KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(db_kind: str) -> Iterator[str]:
    """A fresh, empty database of the parametrised kind ("" = SQLite in the server's home)."""
    if db_kind == "sqlite":
        yield ""
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="module")
def server(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server per test module and database kind."""
    url = create_pg_database() if db_kind == "postgres" else ""
    srv = LiveServer(home=tmp_path_factory.mktemp(f"home-{db_kind}"), database_url=url)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if url:
            drop_pg_database(url)


def _param_words(item: pytest.Item) -> set[str]:
    """The words of a test's parameter id: ``sqlite-ray`` -> {"sqlite", "ray"}."""
    callspec = getattr(item, "callspec", None)
    return set(callspec.id.split("-")) if callspec is not None else set()


def _needs_ray(item: pytest.Item, rel: Path, params: set[str]) -> bool:
    """A test that starts or joins a Ray cluster (unit tests of the Ray modules do not)."""
    if rel.parts[0] == "unit":
        return False
    fixtures = set(getattr(item, "fixturenames", ()))
    return "ray" in rel.stem.split("_") or "ray" in params or bool(RAY_FIXTURES & fixtures)


def xdist_scope(nodeid: str) -> str:
    """The worker group of a test: "ray" for every test that starts or joins Ray (one Ray
    cluster at a time on the machine), else its module (its module-scoped server starts
    once). From the node id alone: the controller that schedules has no items."""
    path, _, rest = nodeid.partition("::")
    params = rest[rest.find("[") + 1 : -1].split("-") if rest.endswith("]") else []
    in_unit = path.startswith("tests/unit/")
    if not in_unit and ("ray" in Path(path).stem.split("_") or "ray" in params):
        return "ray"
    return path


# Heaviest first, so that no long group starts last and runs alone: Ray, then the bench
# smoke and the live-server tiers, the in-process tier, and the unit tests to fill the end.
_ORDER = ("ray", "tests/bench/", "tests/e2e/", "tests/security/", "tests/integration/", "")


def _rank(nodeid: str) -> int:
    scope = xdist_scope(nodeid)
    return next(i for i, prefix in enumerate(_ORDER) if scope.startswith(prefix))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.path)).resolve().relative_to(TESTS)
        tier = TIER_OF_FOLDER.get(rel.parts[0])
        if tier is not None:
            item.add_marker(tier)
        params = _param_words(item)
        if "postgres" in params:
            item.add_marker("postgres")
        if _needs_ray(item, rel, params):
            item.add_marker("ray")
    items.sort(key=lambda item: _rank(item.nodeid))  # stable: the same order on every worker


class _ModuleOrRayScheduling:
    """pytest-xdist's scope scheduling with our groups (``xdist_scope``): whole groups go to
    a worker. (xdist's own ``loadgroup`` tags node ids, which pytest 9.2 no longer lets it.)"""

    @pytest.hookimpl(tryfirst=True)  # before xdist's own, which answers for --dist
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: object) -> object:
        from xdist.scheduler import LoadScopeScheduling

        class ModuleOrRay(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return xdist_scope(nodeid)

        return ModuleOrRay(config, log)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None):
        config.pluginmanager.register(_ModuleOrRayScheduling(), "plughost-xdist-scheduling")
