"""The egress proxy and its relay in this process (no sandbox): CONNECT and absolute-form GET
to an allowed port, refusals with their reason, the address checked is the one connected,
per-namespace connection bound, idle close, the connection log, and download_asset through
the proxy variables."""

from __future__ import annotations

import http.client
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest

from plughost.egress.folders import caller_of
from plughost.egress.proxy import EgressProxy, Limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from egress_support import outside_server, proxy_rig


def _get(proxy_url: str, url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy_url}))
    with opener.open(url, timeout=30) as response:
        return response.read()


def _tunnel(port: int, host: str, target_port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.set_tunnel(host, target_port)
    return conn


def test_get_and_connect_reach_an_allowed_port_and_are_logged() -> None:
    with outside_server() as (port, hits), proxy_rig([f"127.0.0.1:{port}"]) as rig:
        body = _get(rig.relay.url, f"http://127.0.0.1:{port}/plain?x=1")
        assert body == f"outside {port} /plain?x=1".encode()
        conn = _tunnel(rig.relay.port, "127.0.0.1", port)
        conn.request("GET", "/tunnelled")
        assert conn.getresponse().read() == f"outside {port} /tunnelled".encode()
        conn.close()
        assert hits == ["/plain?x=1", "/tunnelled"]
        assert _wait(lambda: len(rig.records) == 2)
    methods = sorted(r.method for r in rig.records)
    assert methods == ["CONNECT", "GET"]
    for record in rig.records:
        assert record.namespace == "ns_a" and record.caller == "r1"
        assert record.decision == "allowed" and record.received > 0 and record.sent > 0
        assert record.destination.startswith(f"127.0.0.1:{port}")
        assert f"egress namespace=ns_a caller=r1 {record.method}" in record.line()


def test_an_unlisted_port_is_refused_with_the_reason() -> None:
    with outside_server() as (allowed, _), outside_server() as (other, hits):
        with proxy_rig([f"127.0.0.1:{allowed}"]) as rig:
            with pytest.raises(urllib.error.HTTPError) as refused:
                _get(rig.relay.url, f"http://127.0.0.1:{other}/")
            assert refused.value.code == 403
            assert "refused by the egress policy" in str(refused.value.reason)
            assert refused.value.headers["X-Plughost-Egress"] == "refused"
            conn = _tunnel(rig.relay.port, "127.0.0.1", other)
            with pytest.raises(OSError, match="403 refused by the egress policy"):
                conn.request("GET", "/")
            assert _wait(lambda: len(rig.records) == 2)
        assert hits == []
    assert all(r.decision == "refused" and "allowlist" in r.reason for r in rig.records)


def test_loopback_needs_an_exact_entry() -> None:
    """A name allowed by a wildcard that resolves to loopback is refused; the same name listed
    exactly is connected, to the address the proxy resolved (the name exists nowhere else)."""

    async def resolver(host: str, port: int) -> Sequence[str]:
        return ["127.0.0.1"] if host == "svc.corp.example" else []

    with outside_server() as (port, hits):
        wildcard = proxy_rig([f"*.corp.example:{port}"], resolver=resolver)
        with wildcard as rig, pytest.raises(urllib.error.HTTPError, match="loopback"):
            _get(rig.relay.url, f"http://svc.corp.example:{port}/")
        entries = [f"*.corp.example:{port}", f"svc.corp.example:{port}"]
        with proxy_rig(entries, resolver=resolver) as rig:
            assert _get(rig.relay.url, f"http://svc.corp.example:{port}/ok").endswith(b"/ok")
        assert hits == ["/ok"]


def test_connections_are_bounded_per_namespace_and_closed_when_idle() -> None:
    with (
        outside_server() as (port, _),
        proxy_rig([f"127.0.0.1:{port}"], Limits(max_connections=1, idle_timeout_s=1.0)) as rig,
    ):
        held = socket.create_connection(("127.0.0.1", rig.relay.port), timeout=30)
        held.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        assert held.recv(100).startswith(b"HTTP/1.1 200")
        with pytest.raises(urllib.error.HTTPError) as busy:
            _get(rig.relay.url, f"http://127.0.0.1:{port}/")
        assert busy.value.code == 503 and "too many" in str(busy.value.reason)
        # nothing moves on the held tunnel: the proxy closes it
        held.settimeout(60)
        assert held.recv(100) == b""
        held.close()
        assert _get(rig.relay.url, f"http://127.0.0.1:{port}/again").endswith(b"/again")


def test_download_asset_goes_through_the_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from plughost.runtime_api.shared.plugins.assets import AssetError, download_asset

    with ExitStack() as stack:
        allowed, _ = stack.enter_context(outside_server())
        other, _ = stack.enter_context(outside_server())
        rig = stack.enter_context(proxy_rig([f"127.0.0.1:{allowed}"]))
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, rig.relay.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.setattr(urllib.request, "_opener", None)  # built from the variables
        path, is_temp = download_asset(f"http://127.0.0.1:{allowed}/img.png")
        assert is_temp and Path(path).read_bytes().endswith(b"/img.png")
        Path(path).unlink()
        with pytest.raises(AssetError, match="refused by the egress policy"):
            download_asset(f"http://127.0.0.1:{other}/img.png")
        with pytest.raises(AssetError, match="refused by the egress policy"):
            download_asset(f"https://127.0.0.1:{other}/img.png")


def test_a_namespace_without_entries_gets_no_socket(tmp_path: Path) -> None:
    proxy = EgressProxy(tmp_path / "s", lambda ns: ("a.example:443",) if ns == "ns_a" else ())
    assert proxy.bind_dir("ns_b", "r1") is None and proxy.bind_dir(None, "r1") is None
    assert not proxy.wants("ns_b") and proxy.wants("ns_a")
    proxy.stop()


def test_the_caller_label_names_the_release_or_the_job() -> None:
    assert caller_of(Path("/home/deployments/r42")) == "r42"
    assert caller_of(Path("/home/batch/job-7/plugin")) == "job-7"


def _wait(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
