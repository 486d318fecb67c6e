"""The services' fixtures: a migrated SQLite database per test (copied from one template),
a local archive store in a tmp folder, and the tenants every test file uses.

Tenants: organization ``org_a`` with namespaces ``ns_a`` and ``ns_b``; organization
``org_b`` with ``ns_other``, the "other tenant" of the hostile-input tests.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plughost.config import Settings
from plughost.control.controller import Controller
from plughost.dataplane.routes import RouteTable
from plughost.domain.ids import plugin_id_for
from plughost.domain.release import ReleaseView
from plughost.domain.scope import PluginScope
from plughost.domain.states import Status
from plughost.metrics.requests import RequestMetrics
from plughost.metrics.window import RecentWindow
from plughost.persistence.db import Database
from plughost.persistence.releases import Releases
from plughost.persistence.tables import Namespace, Organization, Plugin
from plughost.services.deploy import DeployCommands
from plughost.services.lookup import PluginLookup
from plughost.services.status import DeploymentStatus
from plughost.storage.local import LocalArchiveStore

# the controller's fake backend, shared with the controller's own tests
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "control"))
from fake_backend import FakeBackend

FINAL_STATUSES = {Status.DEPLOYED, Status.FAILED, Status.NOT_DEPLOYED}

ORG = "org_a"
OTHER_ORG = "org_b"
NS_A = PluginScope(ORG, "ns_a")
NS_B = PluginScope(ORG, "ns_b")
ORG_LEVEL = PluginScope(ORG, None)
OTHER_TENANT = PluginScope(OTHER_ORG, "ns_other")


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database holding the two organizations and their namespaces."""
    path = tmp_path_factory.mktemp("services-db") / "template.sqlite"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    with db.session() as s:
        s.add_all([Organization(id=ORG, name="A"), Organization(id=OTHER_ORG, name="B")])
        s.flush()
        s.add_all(
            [
                Namespace(id="ns_a", organization_id=ORG, name="a"),
                Namespace(id="ns_b", organization_id=ORG, name="b"),
                Namespace(id="ns_other", organization_id=OTHER_ORG, name="other"),
            ]
        )
    db.dispose()
    return path


@pytest.fixture
def db(tmp_path: Path, template: Path) -> Iterator[Database]:
    """A private copy of the template database."""
    shutil.copy(template, tmp_path / "db.sqlite")
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings in a tmp home, with an archive limit small enough to trip in a test."""
    return Settings(home=tmp_path / "home", max_archive_bytes=64 * 1024, intake_concurrency=1)


@pytest.fixture
def store(tmp_path: Path) -> LocalArchiveStore:
    return LocalArchiveStore(tmp_path / "archives")


def add_plugin(
    db: Database,
    scope: PluginScope,
    name: str,
    version: str = "1.0.0",
    store: LocalArchiveStore | None = None,
    **columns: Any,
) -> Plugin:
    """Register a plugin row directly (as a passed upload would); with ``store``, also
    write a small archive under its storage key. Returns the detached row."""
    key = f"plugins/{scope.organization_id}/{scope.namespace_id or '_org'}/{name}/{version}.zip"
    if store is not None:
        path = store.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"archive of " + name.encode())
    values: dict[str, Any] = {
        "plugin_id": plugin_id_for(name, version),
        "organization_id": scope.organization_id,
        "scope": scope.key,
        "name": name,
        "version": version,
        "description": f"{name} plugin",
        "storage_key": key,
        "archive_url": f"file:///{key}",
        "code_hash": "c0de",
        "validation_status": "passed",
        "validation_errors": [],
        "security_scan_passed": True,
        "has_realtime": False,
        "manifest": {"feature_extractor_name": name, "version": version},
        **columns,
    }
    with db.session() as s:
        row = Plugin(**values)
        s.add(row)
        s.flush()
        s.expunge(row)
    return row


def plugin_zip(
    name: str = "embed", version: str = "1.0.0", overrides: dict[str, str] | None = None
) -> bytes:
    """The bytes of a small plugin archive that passes intake; ``overrides`` (path ->
    text) add or replace files, e.g. to plant code the scanner refuses."""
    files = {
        "manifest.py": (
            f'feature_extractor_name = "{name}"\nversion = "{version}"\n'
            'description = "from the manifest"\n'
            'features = [{"feature_name": "e", "feature_type": "vector", "dimensions": 3}]\n'
            'output_schema = {"type": "object"}\n'
        ),
        "pipeline.py": (
            "def build_steps(extractor_request, container=None, base_steps=None,\n"
            "                dataset_size=None, content_flags=None):\n"
            '    return {"steps": [], "prepare": None}\n'
        ),
        "processors/__init__.py": "",
        "processors/core.py": "def run(frame):\n    return frame\n",
    }
    files.update(overrides or {})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


class EmptyWorkspace:
    """Release folders without archives: the fake backend never reads them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self, release_id: int, storage_key: str) -> Path:
        folder = self.root / f"r{release_id}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def remove(self, release_id: int) -> None:
        shutil.rmtree(self.root / f"r{release_id}", ignore_errors=True)


@dataclass
class DeploySide:
    """The deployment side as the server wires it, over the fake backend (no processes)."""

    releases: Releases
    backend: FakeBackend
    routes: RouteTable
    controller: Controller
    status: DeploymentStatus
    commands: DeployCommands

    async def settle(self, release_id: int, rounds: int = 300) -> ReleaseView:
        """Tick the controller until the release reaches a final status (bounded)."""
        for _ in range(rounds):
            await self.controller.tick()
            view = self.releases.get(release_id)
            if view is not None and view.status in FINAL_STATUSES:
                return view
            await asyncio.sleep(0.005)  # let the rollout task run
        raise AssertionError(f"release {release_id} never reached a final status")


@pytest.fixture
def deploy_side(db: Database, tmp_path: Path) -> DeploySide:
    # one rollout at a time and a known first ETA: the queue arithmetic is visible in tests
    settings = Settings(
        home=tmp_path / "home",
        reconcile_interval_s=0.01,
        drain_timeout_s=0.5,
        max_concurrent_deployments=1,
        default_deploy_eta_s=7,
    )
    releases = Releases(db)
    backend, routes, lookup = FakeBackend(), RouteTable(), PluginLookup(db)
    controller = Controller(
        settings, releases, backend, routes, EmptyWorkspace(tmp_path / "work"), lookup.info
    )
    status = DeploymentStatus(
        settings, releases, controller, routes, lookup, RequestMetrics(), RecentWindow()
    )
    commands = DeployCommands(settings, releases, controller, lookup, status)
    return DeploySide(releases, backend, routes, controller, status, commands)
