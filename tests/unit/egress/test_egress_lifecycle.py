"""When the proxy's sockets close and its folders go: a release's socket once its group
stopped (and its last starting sandbox ended), kept for replicas adopted after a restart
while their group runs; a clean stop removes every folder no detached replica needs, and the
root with them; ``/healthz`` lists the namespaces with an allowlist."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from plughost.backends.base import GroupSpec
from plughost.backends.local.group import LocalReplicaGroup
from plughost.config import Settings
from plughost.egress import SOCKET_NAME
from plughost.egress.proxy import EgressProxy
from plughost.egress.relay import Relay
from plughost.egress.setup import add_allowlist, build_egress
from plughost.sandbox.host import Sandbox, SandboxConfig

ALL_LAYERS = {"bwrap": True, "netns": True, "uid": True, "seccomp": True, "rlimits": True}
TABLE = {"ns_a": ("a.example:443",)}


@pytest.fixture
def root() -> Iterator[Path]:
    """A short folder (Unix socket paths are limited) for the proxy's root, removed after."""
    top = Path(tempfile.mkdtemp(prefix="egr-"))
    try:
        yield top / "s"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _proxy(root: Path) -> EgressProxy:
    return EgressProxy(root, lambda ns: TABLE.get(ns, ()))


def _listening(folder: Path) -> bool:
    return (folder / SOCKET_NAME).exists()


def test_a_releases_socket_closes_once_its_group_stopped(root: Path) -> None:
    proxy = _proxy(root)
    try:
        release = proxy.bind_dir("ns_a", "r3")
        assert release is not None and proxy.bind_dir("ns_a", "r3") == release  # 2 replicas
        proxy.unbind(release)
        proxy.unbind(release)
        assert _listening(release)  # the group runs on (autoscaled to zero, or restarting)
        other = proxy.bind_dir("ns_a", "r4")
        assert other is not None
        starting = proxy.bind_dir("ns_a", "r4")  # a replica of r4 still starting
        proxy.release_gone("ns_a", "r3")
        assert not release.exists()
        proxy.release_gone("ns_a", "r4")
        proxy.unbind(other)
        assert _listening(other)  # the other sandbox has not ended yet
        assert starting is not None
        proxy.unbind(starting)
        assert not other.exists()
        again = proxy.bind_dir("ns_a", "r3")  # the release started here again
        assert again == release and _listening(again)
        proxy.unbind(again)
        assert _listening(again)  # its new group runs
        proxy.release_gone("ns_a", "r3")
        proxy.release_gone("ns_a", "r3")  # a second stop of the group: nothing left to do
        assert not again.exists()
    finally:
        proxy.stop()
    assert not root.exists()


def test_adopted_replicas_keep_their_socket_until_their_group_stops(root: Path) -> None:
    first = _proxy(root)
    kept = first.bind_dir("ns_a", "r7")
    assert kept is not None
    first.stop()  # keep-on-stop: the group was detached, its replicas run on
    assert kept.is_dir() and not _listening(kept)
    second = _proxy(root)
    try:
        add_allowlist(second, None)  # the start: listen again for the replicas it adopts
        assert _listening(kept)
        second.release_gone("ns_a", "r7")  # the adopting group stopped (undeploy)
        assert not kept.exists()
    finally:
        second.stop()
    assert not root.exists()


def test_a_clean_stop_removes_what_no_detached_replica_needs(root: Path) -> None:
    proxy = _proxy(root)
    job = proxy.bind_dir("ns_a", "job-1")  # a batch worker cut by the stop
    gone = proxy.bind_dir("ns_a", "r1")
    detached = proxy.bind_dir("ns_a", "r2")
    assert job is not None and gone is not None and detached is not None
    proxy.unbind(gone)
    proxy.release_gone("ns_a", "r1")
    proxy.stop()
    assert not job.exists() and not gone.exists()
    assert detached.is_dir() and not _listening(detached)  # the next server restores it
    later = _proxy(root)
    add_allowlist(later, None)
    later.release_gone("ns_a", "r2")
    later.stop()
    assert not root.exists()
    _proxy(root).stop()  # a proxy that never listened leaves nothing either
    assert not root.exists()


def test_a_handed_over_servers_stop_leaves_its_successors_sockets(root: Path) -> None:
    """A takeover: the successor on the same home listens in the same folders while the old
    server still runs; the old one's stop must not remove what the successor bound."""
    old = _proxy(root)
    release = old.bind_dir("ns_a", "r1")  # its replicas are handed over (detached)
    job = old.bind_dir("ns_a", "job-1")  # a batch job the successor resumes
    assert release is not None and job is not None
    successor = _proxy(root)
    try:
        add_allowlist(successor, None)  # restores both folders
        assert successor.bind_dir("ns_a", "job-1") == job  # a resumed worker
        old.stop()
        assert _listening(release) and _listening(job)
        relay = Relay(str(release / SOCKET_NAME)).start()
        try:  # answered by the successor: a refusal (a.example:443 only), not a dead socket
            handler = urllib.request.ProxyHandler({"http": relay.url})
            with pytest.raises(urllib.error.HTTPError, match="refused by the egress policy"):
                urllib.request.build_opener(handler).open("http://b.example/", timeout=30)
        finally:
            relay.listener.close()
    finally:
        successor.stop()


def _sandbox() -> Sandbox:
    return Sandbox(SandboxConfig(mode="strict"), dict(ALL_LAYERS), bwrap_path="/usr/bin/bwrap")


def test_a_stopped_group_closes_its_releases_socket(root: Path, tmp_path: Path) -> None:
    """The hook in the local backend: :meth:`LocalReplicaGroup.stop` (undeploy, rollout done,
    failed) closes the release's socket; :meth:`detach` (keep-on-stop) keeps it."""
    sandbox = _sandbox()
    sandbox.egress_proxy = proxy = _proxy(root)
    settings = Settings(home=tmp_path / "home")
    try:
        folders = []
        for release_id in (5, 6):
            plugin_dir = tmp_path / "deployments" / f"r{release_id}"
            spec = GroupSpec("d", release_id, plugin_dir, namespace_id="ns_a")
            folder = proxy.bind_dir("ns_a", f"r{release_id}")
            assert folder is not None
            proxy.unbind(folder)  # its replica ended; the group is still there
            group = LocalReplicaGroup(spec, settings, tmp_path, sandbox)
            folders.append((group, folder))
        (stopped, stopped_dir), (detached, detached_dir) = folders
        asyncio.run(stopped.stop(0))
        assert not stopped_dir.exists()
        detached.detach()
        assert _listening(detached_dir)
    finally:
        proxy.stop()
    assert detached_dir.is_dir()  # left for the next server's adoption


def test_healthz_lists_the_namespaces_with_an_allowlist(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", egress_allow="ns_a=a.example;ns_b=b.example")
    sandbox = _sandbox()
    assert sandbox.status()["egress_allowlists"] == []
    sandbox.egress_proxy = build_egress(settings, sandbox)
    policies = {"ns_c": ("c.example",), "ns_none": ()}
    add_allowlist(sandbox.egress_proxy, lambda ns: policies.get(ns, ()), policies.keys)
    assert sandbox.status()["egress_allowlists"] == ["ns_a", "ns_b", "ns_c"]
    policies["ns_c"] = ()  # cleared through the admin API
    policies["ns_a"] = ("a2.example",)  # the setting's namespace gets more entries
    assert sandbox.status()["egress_allowlists"] == ["ns_a", "ns_b"]
