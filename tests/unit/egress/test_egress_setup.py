"""The proxy built from the settings (PLUGHOST_EGRESS_ALLOW), and a later server listening
again on the sockets an earlier one bound into replicas it adopts."""

from __future__ import annotations

import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from plughost.config import Settings
from plughost.egress import SOCKET_NAME
from plughost.egress.proxy import EgressProxy
from plughost.egress.relay import Relay
from plughost.egress.setup import add_allowlist, build_egress
from plughost.sandbox.host import Sandbox, SandboxConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from egress_support import outside_server

ALL_LAYERS = {"bwrap": True, "netns": True, "uid": True, "seccomp": True, "rlimits": True}


def _sandbox(mode: str = "strict") -> Sandbox:
    return Sandbox(SandboxConfig(mode=mode), dict(ALL_LAYERS), bwrap_path="/usr/bin/bwrap")


def test_the_setting_feeds_the_allowlist(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", egress_allow="ns_a=api.example.com:443")
    proxy = build_egress(settings, _sandbox())
    assert proxy is not None
    assert proxy.allowlist("ns_a") == ("api.example.com:443",)
    assert proxy.allowlist("ns_b") == () and not proxy.wants("ns_b")
    proxy.stop()


def test_a_bad_setting_stops_the_server(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", egress_allow="ns_a=api.example.com:https")
    with pytest.raises(ValueError, match="PLUGHOST_EGRESS_ALLOW"):
        build_egress(settings, _sandbox())


def test_no_proxy_on_ray_or_without_a_sandbox(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ray = Settings(home=tmp_path / "home", backend="ray", egress_allow="ns_a=a.example")
    assert build_egress(ray, _sandbox()) is None
    assert "not supported on the ray backend" in caplog.text and "ns_a" in caplog.text
    off = Settings(home=tmp_path / "home", egress_allow="ns_a=a.example")
    assert build_egress(off, Sandbox(SandboxConfig(mode="off"), {})) is None


def test_policies_add_to_the_setting() -> None:
    proxy = EgressProxy(Path("/nonexistent-egress"), lambda ns: ("a.example",) if ns == "x" else ())
    add_allowlist(proxy, lambda ns: ("b.example:8443",) if ns in ("x", "y") else ())
    assert proxy.allowlist("x") == ("a.example", "b.example:8443")
    assert proxy.allowlist("y") == ("b.example:8443",) and proxy.allowlist("z") == ()
    add_allowlist(None, lambda ns: ())  # no proxy (sandbox off, Ray): nothing to do


def test_a_later_proxy_listens_again_for_adopted_replicas() -> None:
    root = Path(tempfile.mkdtemp(prefix="egr-")) / "s"
    table = {"ns_a": ("127.0.0.1:1",)}
    try:
        with outside_server() as (port, hits):
            table["ns_a"] = (f"127.0.0.1:{port}",)
            first = EgressProxy(root, lambda ns: table.get(ns, ()))
            kept = first.bind_dir("ns_a", "r1")
            gone = first.bind_dir("ns_a", "r2")
            assert kept is not None and gone is not None
            first.stop()
            assert not (kept / SOCKET_NAME).exists()
            # the namespace's allowlist changed meanwhile: r2's folder claims another owner
            (gone / "owner.json").write_text('{"namespace": "ns_gone", "caller": "r2"}')
            # the policies (admin API) add an allowlist for ns_a; the setting has none now
            second = EgressProxy(root, lambda ns: ())
            add_allowlist(second, lambda ns: table.get(ns, ()))
            assert not gone.exists()
            relay = Relay(str(kept / SOCKET_NAME)).start()
            try:
                handler = urllib.request.ProxyHandler({"http": relay.url})
                with urllib.request.build_opener(handler).open(
                    f"http://127.0.0.1:{port}/adopted", timeout=30
                ) as response:
                    assert response.read().endswith(b"/adopted")
            finally:
                relay.listener.close()
                second.stop()
            assert hits == ["/adopted"]
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


def test_a_batch_jobs_socket_closes_with_its_last_worker_a_releases_stays() -> None:
    root = Path(tempfile.mkdtemp(prefix="egr-")) / "s"
    proxy = EgressProxy(root, lambda ns: ("a.example:443",))
    try:
        job = proxy.bind_dir("ns_a", "job-1")
        assert job is not None and proxy.bind_dir("ns_a", "job-1") == job  # two workers
        release = proxy.bind_dir("ns_a", "r3")
        assert release is not None
        proxy.unbind(job)
        assert (job / SOCKET_NAME).exists()
        proxy.unbind(job)
        assert not job.exists()
        proxy.unbind(release)
        assert (release / SOCKET_NAME).exists()
    finally:
        proxy.stop()
        shutil.rmtree(root.parent, ignore_errors=True)
