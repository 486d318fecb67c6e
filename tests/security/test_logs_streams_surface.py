"""Issue 28, the logs surface and the streams, against a live strict-mode server:

- a plugin printing terminal control (screen clear, window title, CR, BS, DEL, C1, a bidi
  override) on stdout, stderr and logging: the logs API and its stream answer the lines
  escaped, never raw; `plughost logs` prints none of it raw;
- a plugin printing two 10 MB lines (one without a newline): every kept line is cut to
  PLUGHOST_LOG_LINE_MAX_BYTES with a marker, the logs API answers, the server's memory stays
  bounded and it keeps answering;
- 1,000 idle event streams (log follows and status watches): `/healthz` and a realtime call
  still answer; past the namespace's share a stream is refused with 429, past the server's
  total with 503, both with Retry-After; an idle stream is ended cleanly at its lifetime, and
  the slots of clients that went away come back.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from logs_streams_support import (
    RAW_CONTROL,
    SLOW_REALTIME,
    TERM_REALTIME,
    RawStream,
    open_stream,
    plugin_zip,
    rss_bytes,
)
from sec_servers import server_env
from sec_support import NS, upload_raw, wait_status
from support import LiveServer, unique_name

NS2 = "ns_streams_second"
PER_NAMESPACE = 600
TOTAL = 1000
LIFETIME_S = 90  # opening the 1,000 streams and the checks take a few seconds
LINE_MAX = 16384
MARKER = " bytes cut]"
PLUGHOST = str(Path(sys.executable).parent / "plughost")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard or (soft < 4096 and hard == resource.RLIM_INFINITY):
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))  # the server inherits it
    env = server_env(skip_scan=False)
    env.update(
        PLUGHOST_STREAMS_MAX_OPEN=str(TOTAL),
        PLUGHOST_STREAMS_MAX_PER_NAMESPACE=str(PER_NAMESPACE),
        PLUGHOST_STREAM_MAX_LIFETIME_S=str(LIFETIME_S),
        PLUGHOST_STREAM_KEEPALIVE_S="5",
        PLUGHOST_LOG_LINE_MAX_BYTES=str(LINE_MAX),
        PLUGHOST_REPLICA_START_TIMEOUT_S="900",  # the slow plugin stays starting
        PLUGHOST_REPLICA_CALL_TIMEOUT_S="60",
    )
    home = tmp_path_factory.mktemp("sec-logs-streams")
    srv = LiveServer(home=home, extra_env=env).start(timeout=180)
    srv.key = (home / "admin-key").read_text().strip()
    try:
        yield srv
    finally:
        srv.stop()


def _deployed(c: httpx.Client, realtime: str, ns: str = NS) -> dict[str, Any]:
    up = upload_raw(c, unique_name("term"), plugin_zip("term", realtime), ns=ns)
    assert up["success"], up
    c.post(f"/v1/namespaces/{ns}/plugins/{up['plugin_id']}/deploy").raise_for_status()
    body = wait_status(c, up["plugin_id"], timeout=120, ns=ns)
    assert body["status"] == "deployed", body
    return body


@pytest.fixture(scope="module")
def term(server: LiveServer) -> dict[str, Any]:
    with server.client() as c:
        return _deployed(c, TERM_REALTIME)


def _call(c: httpx.Client, route: str, inputs: dict[str, Any]) -> None:
    resp = c.post(route, json={"inputs": inputs, "parameters": {}})
    assert resp.status_code == 200 and resp.json()["ok"] is True, resp.text


def _wait_lines(c: httpx.Client, plugin_id: str, needed: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        resp = c.get(f"/v1/namespaces/{NS}/plugins/{plugin_id}/logs", params={"limit": 5000})
        assert resp.status_code == 200, resp.text
        lines: list[dict[str, Any]] = resp.json()["lines"]
        if any(needed in line["line"] for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.3)


def test_terminal_control_is_escaped_in_the_api_and_stripped_in_the_cli(
    server: LiveServer, term: dict[str, Any]
) -> None:
    plugin_id = term["plugin_id"]
    with server.client() as c:
        _call(c, term["route_prefix"], {"hostile": True})
        lines = _wait_lines(c, plugin_id, "logged clear")
        hostile = [line for line in lines if "pwned title" in line["line"]]
        assert {line["stream"] for line in hostile} == {"stdout", "stderr", "log"}, lines
        for line in hostile:
            assert not RAW_CONTROL.search(line["line"]), line
            assert (
                "clear\\x1b[2J\\x1b[Hmid\\x1b]0;pwned title\\x07end\\x0d\\x08\\x7f" in line["line"]
            )
            assert "\\x9b31m\\u202eevil\ttab" in line["line"]
        # the stream: the same lines, escaped, in its first window
        url = f"/v1/namespaces/{NS}/plugins/{plugin_id}/logs"
        with c.stream("GET", url, params={"follow": "true", "limit": 5000}) as resp:
            assert resp.status_code == 200
            events = []
            for raw in resp.iter_lines():
                if raw.startswith("data: "):
                    events.append(orjson.loads(raw[6:]))
                if sum("pwned title" in e["line"] for e in events) == 3:
                    break
        assert all(not RAW_CONTROL.search(e["line"]) for e in events)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
    env.update(PLUGHOST_URL=server.url, PLUGHOST_API_KEY=server.key)
    out = subprocess.run(
        [PLUGHOST, "logs", plugin_id, "--limit", "5000"],
        env=env,
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    printed = out.stdout.decode()
    assert "pwned title" in printed and "evil" in printed
    assert not RAW_CONTROL.search(printed.replace("\n", "")), "raw control reached the terminal"


def test_ten_megabyte_lines_are_cut_and_the_server_stays_healthy(
    server: LiveServer, term: dict[str, Any]
) -> None:
    assert server.proc is not None
    before = rss_bytes(server.proc.pid)
    with server.client() as c:
        _call(c, term["route_prefix"], {"huge": True})
        lines = _wait_lines(c, term["plugin_id"], "after huge")
        assert any(line["line"] == "after huge" for line in lines), "the lines after were lost"
        long = [line["line"] for line in lines if line["line"][:1] in ("y", "z")]
        assert long and all(len(t.encode()) <= LINE_MAX + 40 for t in long), max(map(len, long))
        assert all(t.endswith(MARKER) for t in long if len(t) > LINE_MAX)
        assert any(MARKER in t for t in long)
        assert c.get("/healthz").status_code == 200
        _call(c, term["route_prefix"], {})
    grown = rss_bytes(server.proc.pid) - before
    assert grown < 200 * 1024 * 1024, f"the server grew by {grown / 1048576:.0f} MiB"


async def _open_many(port: int, path: str, key: str, count: int) -> list[RawStream]:
    streams: list[RawStream] = []
    for start in range(0, count, 50):
        batch = await asyncio.gather(
            *(open_stream(port, path, key) for _ in range(min(50, count - start)))
        )
        streams.extend(batch)
    return streams


async def _streams_scenario(server: LiveServer, term: dict[str, Any], slow_id: str) -> None:
    port, key = server.port, server.key
    # idle: no line of the last second to send first, and the plugin prints no more
    logs = f"/v1/namespaces/{NS}/plugins/{term['plugin_id']}/logs?follow=true&since=1s"
    watch = f"/v1/namespaces/{NS2}/plugins/{slow_id}/status?watch=true"
    assert server.proc is not None
    before = rss_bytes(server.proc.pid)
    streams = await _open_many(port, logs, key, PER_NAMESPACE)
    streams += await _open_many(port, watch, key, TOTAL - PER_NAMESPACE)
    try:
        assert [s.status for s in streams] == [200] * TOTAL, {s.status for s in streams}
        grown = rss_bytes(server.proc.pid) - before
        assert grown < 300 * 1024 * 1024, f"1,000 idle streams took {grown / 1048576:.0f} MiB"
        async with httpx.AsyncClient(base_url=server.url, headers=server.auth, timeout=5) as c:
            # the server still answers within 5 s (the client's time-out) with 1,000 open
            assert (await c.get("/healthz")).status_code == 200
            resp = await c.post(term["route_prefix"], json={"inputs": {}, "parameters": {}})
            assert resp.status_code == 200 and resp.json()["ok"] is True
        over_ns = await open_stream(port, logs, key)
        assert over_ns.status == 429 and over_ns.header("retry-after"), over_ns.head
        assert b"TooManyRequestsError" in await over_ns.body_until_closed(30)
        full = await open_stream(port, watch, key)
        assert full.status == 503 and full.header("retry-after"), full.head
        # an idle stream is ended cleanly at its lifetime
        ended = await streams[0].body_until_closed(LIFETIME_S + 120)
        assert b": end of stream: lifetime reached" in ended and ended.endswith(b"0\r\n\r\n")
        assert b": keepalive" in ended  # every 5 s meanwhile
    finally:
        for stream in streams:
            stream.close()
    # the clients went away: their slots come back (noticed at the latest by a keepalive)
    deadline = time.monotonic() + 60
    while True:
        again = await open_stream(port, logs, key)
        again.close()
        if again.status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert again.status == 200, again.head


@pytest.mark.slow
def test_a_thousand_idle_streams_are_bounded_and_the_server_keeps_answering(
    server: LiveServer, term: dict[str, Any]
) -> None:
    made = server.cli("namespaces", "create", "streams second", "--id", NS2)
    assert made.returncode == 0, made.stderr
    with server.client() as c:
        up = upload_raw(c, unique_name("slow"), plugin_zip("slow", SLOW_REALTIME), ns=NS2)
        assert up["success"], up
        slow_id = up["plugin_id"]
        c.post(f"/v1/namespaces/{NS2}/plugins/{slow_id}/deploy").raise_for_status()
        status = c.get(f"/v1/namespaces/{NS2}/plugins/{slow_id}/status").json()
        assert status["status"] not in ("deployed", "failed", "not_deployed"), status
    asyncio.run(_streams_scenario(server, term, slow_id))
