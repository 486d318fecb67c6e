"""The controller against a fake backend: desired state in (a real SQLite releases table),
replica groups and routes out. No processes; each test runs in well under a second.

Desired state is written the way the API writes it (``Releases.enqueue``,
``DeployCommands.take_down``, ``Releases.set_alias``); :meth:`Harness.settle` ticks the
controller until nothing is left to do.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fake_backend import FakeBackend
from sqlalchemy import select

from plughost.config import Settings
from plughost.control.controller import Controller, PluginRuntimeInfo
from plughost.dataplane.inference import Inference
from plughost.dataplane.routes import RouteTable
from plughost.domain.release import ReleaseView
from plughost.domain.scope import PluginScope
from plughost.domain.states import Status
from plughost.metrics.requests import RequestMetrics
from plughost.metrics.window import RecentWindow
from plughost.persistence.db import Database
from plughost.persistence.releases import Releases
from plughost.persistence.tables import Namespace, Organization, Plugin, ReleaseEvent
from plughost.services.deploy import DeployCommands
from plughost.services.lookup import PluginLookup
from plughost.services.status import DeploymentStatus

NS = "ns_a"
T = TypeVar("T")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database with one organization and namespace, copied by each test."""
    path = tmp_path_factory.mktemp("db") / "template.sqlite"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    with db.session() as s:
        s.add(Organization(id="org", name="org"))
        s.flush()
        s.add(Namespace(id=NS, organization_id="org", name=NS))
    db.dispose()
    return path


class FakeWorkspace:
    """Release folders without archives: prepare makes an empty folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.removed: list[int] = []

    def prepare(self, release_id: int, storage_key: str) -> Path:
        folder = self.root / f"r{release_id}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def remove(self, release_id: int) -> None:
        self.removed.append(release_id)
        shutil.rmtree(self.root / f"r{release_id}", ignore_errors=True)


class Harness:
    """One database, and a controller over it that can be 'restarted' (a new controller,
    backend and route table on the same database, the old one simply abandoned)."""

    def __init__(self, tmp_path: Path, template: Path, **settings: Any) -> None:
        shutil.copy(template, tmp_path / "db.sqlite")
        self.db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
        self.settings = Settings(
            home=tmp_path, reconcile_interval_s=0.01, drain_timeout_s=0.5, **settings
        )
        self.workspace = FakeWorkspace(tmp_path / "work")
        self.manifests: dict[int, dict[str, Any]] = {}
        self.releases = Releases(self.db)
        # abandoned controllers and backends stay referenced: their stuck tasks are then
        # cancelled when the test's loop ends, not closed by the garbage collector mid-test
        self.abandoned: list[Any] = []
        self.restart()

    def restart(self) -> None:
        if hasattr(self, "controller"):
            self.abandoned.append((self.controller, self.backend))
        self.backend = FakeBackend()
        self.routes = RouteTable()
        self.controller = Controller(
            self.settings, self.releases, self.backend, self.routes, self.workspace,  # type: ignore[arg-type]
            self._info,
        )
        # calls are timed on the backend's clock: a fake call takes exactly its injected
        # delay, however loaded the machine is (the canary's latency rule reads these)
        lookup = PluginLookup(self.db)
        metrics = RequestMetrics()
        status = DeploymentStatus(
            self.settings, self.releases, self.controller, self.routes, lookup, metrics,
            RecentWindow(),
        )
        self.deployments = DeployCommands(
            self.settings, self.releases, self.controller, lookup, status
        )
        self.inference = Inference(
            self.settings, self.routes, self.controller.restores, metrics, lookup,
            clock=self.backend.clock,
        )

    def _info(self, plugin_pk: int) -> PluginRuntimeInfo | None:
        manifest = self.manifests.get(plugin_pk)
        return None if manifest is None else PluginRuntimeInfo(f"k/{plugin_pk}", manifest)

    def plugin(self, name: str, version: str = "1.0.0", **manifest: Any) -> Plugin:
        with self.db.session() as s:
            row = Plugin(
                plugin_id=f"{name}_{version.replace('.', '_')}", organization_id="org",
                scope=NS, name=name, version=version, storage_key=f"k/{name}", archive_url="",
                code_hash="", validation_status="passed", validation_errors=[],
                security_scan_passed=True, has_realtime=True, manifest=manifest,
            )
            s.add(row)
            s.flush()
            s.expunge(row)
        self.manifests[row.id] = manifest
        return row

    def enqueue(self, plugin: Plugin) -> ReleaseView:
        return self.releases.enqueue(NS, plugin, "Plugin is queued for deployment.")

    def status(self, release: ReleaseView) -> Status:
        current = self.releases.get(release.id)
        assert current is not None
        return current.status

    def path(self, release: ReleaseView) -> list[str]:
        """The statuses the release went through, from its event rows."""
        with self.db.session() as s:
            events = s.scalars(
                select(ReleaseEvent).where(ReleaseEvent.release_id == release.id)
                .order_by(ReleaseEvent.id)
            ).all()
            return [e.to_status for e in events if e.to_status != e.from_status]

    def route(self, name: str) -> int | None:
        route = self.routes.lookup(NS, name)
        return None if route is None else route.release_id

    async def settle(self, rounds: int = 200) -> None:
        """Tick until two ticks in a row leave no rollout, recovery or drain (bounded)."""
        quiet = 0
        for _ in range(rounds):
            await self.controller.tick()
            busy = [t for _, _, t in self.controller.tasks.values()]
            busy += list(self.controller._draining.values())
            busy += list(self.controller._background)
            if not busy:
                quiet += 1
                if quiet == 2:
                    return
                continue
            quiet = 0
            await asyncio.wait(busy, timeout=0.05)
        raise AssertionError("the controller did not settle")

    async def until(self, check: Callable[[], bool], rounds: int = 200) -> None:
        for _ in range(rounds):
            await self.controller.tick()
            if check():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("condition not reached")

    async def take_down(self, plugin: Plugin) -> bool:
        return await self.deployments.take_down(NS, plugin.id)

    async def rollback(self, name: str, version: str) -> dict[str, Any]:
        return await self.deployments.rollback(NS, name, version)

    def close(self) -> None:
        self.db.dispose()


def run(make: Callable[[], Awaitable[T]], timeout_s: float = 10.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(make(), timeout_s)

    return asyncio.run(bounded())


@pytest.fixture
def harness(tmp_path: Path, template: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**settings: Any) -> Harness:
        made.append(Harness(tmp_path, template, **settings))
        return made[-1]

    yield make
    for h in made:
        h.close()


DEPLOYED_PATH = ["queued", "pending", "in_progress", "deployed"]


# -- ordering ---------------------------------------------------------------------------------


def test_a_release_goes_queued_pending_in_progress_deployed_and_gets_its_routes(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        p = h.plugin("alpha", example_input={"text": "hi"})
        rel = h.enqueue(p)
        await h.settle()
        assert h.path(rel) == DEPLOYED_PATH
        assert h.route("alpha") == h.route(p.plugin_id) == h.route(f"custom_plugin_{p.plugin_id}") == rel.id
        assert h.releases.alias(NS, "alpha") == rel.id
        assert h.backend.group_of(rel.id).calls == 1  # the smoke call with example_input

    run(scenario)


def test_ticks_are_idempotent_one_start_per_release(harness: Callable[..., Harness]) -> None:
    h = harness()

    async def scenario() -> None:
        rel = h.enqueue(h.plugin("alpha"))
        h.backend.hold(rel.id)
        for _ in range(5):
            await h.controller.tick()
            await asyncio.sleep(0)
        h.backend.let_go(rel.id)
        await h.settle()
        for _ in range(3):
            await h.controller.tick()
        assert h.backend.started == [rel.id]
        assert h.status(rel) is Status.DEPLOYED

    run(scenario)


def test_a_redeploy_waits_for_the_rollout_of_the_same_plugin_then_supersedes_it(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        p = h.plugin("alpha")
        first = h.enqueue(p)
        h.backend.hold(first.id)
        await h.until(lambda: h.backend.waiting(first.id))
        second = h.enqueue(p)
        for _ in range(3):
            await h.controller.tick()
            await asyncio.sleep(0)
        assert h.backend.started == [first.id]  # queued behind the rollout under way
        assert h.status(second) is Status.QUEUED
        h.backend.let_go(first.id)
        await h.settle()
        assert h.backend.started == [first.id, second.id]
        assert h.status(first) is Status.SUPERSEDED and h.status(second) is Status.DEPLOYED
        assert h.backend.group_of(first.id).stopped == h.settings.drain_timeout_s
        assert h.route("alpha") == second.id and set(h.controller.groups) == {second.id}

    run(scenario)


def test_no_more_rollouts_run_at_once_than_the_limit_and_the_rest_wait_in_order(
    harness: Callable[..., Harness],
) -> None:
    h = harness(max_concurrent_deployments=2)

    async def scenario() -> None:
        rels = [h.enqueue(h.plugin(f"plug{i}")) for i in range(5)]
        for rel in rels:
            h.backend.hold(rel.id)
        await h.until(lambda: h.backend.running == 2)
        for _ in range(3):
            await h.controller.tick()
        # the first two of the queue run; which of them reaches its start first is up to
        # the threads their rollouts prepare in
        assert sorted(h.backend.started) == [rels[0].id, rels[1].id]
        assert [h.status(r) for r in rels[2:]] == [Status.QUEUED] * 3
        # one slot at a time frees up: each time the next of the queue, and only it, starts
        for done, starting in ((0, 2), (1, 3), (2, 4)):
            h.backend.let_go(rels[done].id)
            await h.until(lambda n=starting + 1: len(h.backend.started) >= n)  # type: ignore[misc]
            assert h.backend.started[starting:] == [rels[starting].id], h.backend.started
            assert [h.status(r) for r in rels[starting + 1 :]] == [Status.QUEUED] * (4 - starting)
        for rel in rels:
            h.backend.let_go(rel.id)
        await h.settle()
        assert h.backend.peak == 2
        assert sorted(h.backend.started) == [r.id for r in rels]
        assert all(h.status(r) is Status.DEPLOYED for r in rels)

    run(scenario)


def test_a_second_deploy_joins_the_queued_one(harness: Callable[..., Harness]) -> None:
    h = harness(max_concurrent_deployments=1)

    async def scenario() -> None:
        slow, other = h.plugin("slowone"), h.plugin("joiner")
        busy = h.enqueue(slow)
        h.backend.hold(busy.id)
        await h.until(lambda: h.backend.running == 1)
        scope = PluginScope("org", NS)
        first = h.deployments.deploy(scope, other.plugin_id, None)
        second = h.deployments.deploy(scope, other.plugin_id, None)
        assert first["status"] == second["status"] == "queued"
        assert first["queue_position"] == second["queue_position"] == 1
        assert "joined" in second["message"]
        assert len(h.releases.of_plugin(NS, other.id, {Status.QUEUED})) == 1
        h.backend.let_go(busy.id)
        await h.settle()
        assert h.status(h.releases.latest(NS, other.id)) is Status.DEPLOYED  # type: ignore[arg-type]

    run(scenario)


# -- failures -----------------------------------------------------------------------------------


def test_a_failed_start_fails_the_release_and_keeps_the_old_one_serving(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        p = h.plugin("alpha")
        old = h.enqueue(p)
        await h.settle()
        new = h.enqueue(p)
        h.backend.fail_start(new.id, "ImportError: no module named torch")
        await h.settle()
        assert h.path(new) == ["queued", "pending", "in_progress", "failed"]
        current = h.releases.get(new.id)
        assert current is not None and "no module named torch" in (current.error or "")
        assert h.status(old) is Status.DEPLOYED
        assert h.route("alpha") == h.route(p.plugin_id) == old.id
        assert h.backend.group_of(old.id).stopped is None

    run(scenario)


def test_unhealthy_new_replicas_are_stopped_and_the_release_fails(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        rel = h.enqueue(h.plugin("alpha"))
        h.backend.unhealthy(rel.id)
        await h.settle()
        assert h.status(rel) is Status.FAILED
        assert h.backend.group_of(rel.id).stopped == 0
        assert h.route("alpha") is None and not h.controller.groups

    run(scenario)


def test_replicas_that_keep_crashing_fail_the_release_and_free_its_routes(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        p = h.plugin("alpha")
        rel = h.enqueue(p)
        await h.settle()
        h.backend.group_of(rel.id).crash("replicas crashed 5 times in a row; giving up")
        await h.settle()
        current = h.releases.get(rel.id)
        assert current is not None and "crashed 5 times" in (current.error or "")
        assert h.route("alpha") is None and h.route(p.plugin_id) is None
        assert h.releases.alias(NS, "alpha") is None
        for _ in range(3):  # and it is not brought back
            await h.controller.tick()
        assert h.backend.started == [rel.id]

    run(scenario)


# -- restarts -----------------------------------------------------------------------------------


def test_an_interrupted_rollout_resumes_after_a_restart(harness: Callable[..., Harness]) -> None:
    h = harness()

    async def scenario() -> None:
        p, q = h.plugin("alpha"), h.plugin("beta")
        rolling = h.enqueue(p)
        h.backend.hold(rolling.id)
        await h.until(lambda: h.backend.waiting(rolling.id))
        assert h.status(rolling) is Status.IN_PROGRESS
        queued = h.enqueue(q)
        h.restart()  # the old controller is abandoned mid-start, as in a crash
        await h.settle()
        assert h.status(rolling) is Status.DEPLOYED and h.status(queued) is Status.DEPLOYED
        assert h.path(rolling) == DEPLOYED_PATH
        assert h.route("alpha") == rolling.id and h.route("beta") == queued.id

    run(scenario)


def test_a_restart_brings_deployed_releases_back_with_their_alias(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        v1, v2 = h.plugin("alpha", "1.0.0"), h.plugin("alpha", "2.0.0")
        r1 = h.enqueue(v1)
        await h.settle()
        r2 = h.enqueue(v2)  # after v1: the newest deployed version takes the alias
        await h.settle()
        await h.rollback("alpha", "1.0.0")
        h.restart()
        await h.settle()
        assert sorted(h.backend.started) == [r1.id, r2.id]
        assert h.route("alpha") == r1.id and h.route(v2.plugin_id) == r2.id

    run(scenario)


# -- desired state written during a rollout ---------------------------------------------------


def test_undeploy_during_a_rollout_cancels_it_and_stops_what_it_started(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        p = h.plugin("alpha")
        live = h.enqueue(p)
        await h.settle()
        rolling = h.enqueue(p)
        h.backend.hold(rolling.id)
        await h.until(lambda: h.backend.waiting(rolling.id))
        assert await h.take_down(p) is True
        # answered once it holds: nothing of the plugin runs or is routed any more
        assert h.status(rolling) is Status.NOT_DEPLOYED and h.status(live) is Status.NOT_DEPLOYED
        assert not h.controller.tasks and not h.controller.groups
        assert h.backend.group_of(live.id).stopped == h.settings.drain_timeout_s
        assert h.route("alpha") is None and h.route(p.plugin_id) is None
        assert h.releases.alias(NS, "alpha") is None
        for _ in range(3):
            await h.controller.tick()
        assert h.backend.started == [live.id, rolling.id]

    run(scenario)


def test_undeploying_the_alias_target_moves_the_alias_to_the_other_version(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        v1, v2 = h.plugin("alpha", "1.0.0"), h.plugin("alpha", "2.0.0")
        r1 = h.enqueue(v1)
        await h.settle()
        r2 = h.enqueue(v2)  # after v1: the newest deployed version takes the alias
        await h.settle()
        assert h.route("alpha") == r2.id
        assert await h.take_down(v2) is True
        assert h.releases.alias(NS, "alpha") == r1.id and h.route("alpha") == r1.id
        assert await h.take_down(v2) is False  # again: nothing left to take down

    run(scenario)


def test_rollback_during_a_rollout_moves_the_alias_at_once_and_the_rollout_takes_it_after(
    harness: Callable[..., Harness],
) -> None:
    h = harness()

    async def scenario() -> None:
        v1, v2, v3 = (h.plugin("alpha", v) for v in ("1.0.0", "2.0.0", "3.0.0"))
        r1 = h.enqueue(v1)
        await h.settle()
        r2 = h.enqueue(v2)  # after v1: the newest deployed version takes the alias
        await h.settle()
        r3 = h.enqueue(v3)
        h.backend.hold(r3.id)
        await h.until(lambda: h.backend.waiting(r3.id))
        answer = await h.rollback("alpha", "1.0.0")
        assert answer["previous_version"] == "2.0.0" and answer["active_version"] == "1.0.0"
        assert h.route("alpha") == r1.id and h.releases.alias(NS, "alpha") == r1.id
        h.backend.let_go(r3.id)
        await h.settle()
        assert h.route("alpha") == r3.id and h.releases.alias(NS, "alpha") == r3.id
        assert h.route(v2.plugin_id) == r2.id  # other versions keep serving

    run(scenario)
