"""A burst of multipart uploads while replicas start and stop: no upload may fail.

A stray close(2) once closed the archive an upload had just opened (500 with EBADF) while
deployments came and went. This drives both at once on a live server whose close check is
on (tests/support.py switches it on for every live server): a deploy, redeploy and undeploy
loop in one thread, 200 uploads from 8 threads, then no 500, no failed close and nothing
closed by the garbage collector in the server's log.

The cause was the replicas' stdout streams: under uvloop a stream whose protocol keeps it
half open at end of file was never closed, and the collector closed its descriptor twice
(plughost.backends.local.launch._stream_reader). With it, each run of this test logged
about a hundred such closes.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from deploy_support import NS, deploy, plugin_archive, upload, wait_for
from support import LiveServer, assert_no_fd_errors, unique_name

from plughost.server.fdcheck import GC_CLOSE_PREFIX, INSTALLED_LINE

UPLOADS = 200
UPLOAD_THREADS = 8


@dataclass
class Churn:
    """Deploy, redeploy (blue-green: a new replica starts, the old one stops) and undeploy
    one plugin in a loop until told to stop; counts its cycles and keeps its errors."""

    server: LiveServer
    plugin_id: str
    stop: threading.Event = field(default_factory=threading.Event)
    cycles: int = 0
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        with self.server.client() as c:
            while not self.stop.is_set():
                try:
                    self._cycle(c)
                except (AssertionError, httpx.HTTPError) as exc:
                    self.errors.append(repr(exc))
                    return
                self.cycles += 1

    def _cycle(self, c: httpx.Client) -> None:
        deploy(c, self.plugin_id)
        wait_for(c, self.plugin_id, {"deployed"}, timeout=60)
        deploy(c, self.plugin_id)
        wait_for(c, self.plugin_id, {"deployed"}, timeout=60)
        resp = c.post(f"/v1/namespaces/{NS}/plugins/{self.plugin_id}/undeploy")
        assert resp.status_code == 200, resp.text
        wait_for(c, self.plugin_id, {"not_deployed"}, timeout=60)


def upload_burst(server: LiveServer, count: int, threads: int) -> dict[int, list[str]]:
    """``count`` multipart uploads of distinct plugins, ``threads`` at a time: the answers
    by status code (each with the plugin name, and the body unless it was a 200)."""
    names = [unique_name("burst") for _ in range(count)]
    archives = [(name, plugin_archive(name)) for name in names]
    local = threading.local()

    def one(item: tuple[str, bytes]) -> tuple[int, str]:
        if not hasattr(local, "client"):
            local.client = server.client()
        name, archive = item
        resp = local.client.post(
            f"/v1/namespaces/{NS}/plugins", data={"name": name, "version": "1.0.0"},
            files={"file": ("plugin.zip", archive, "application/zip")},
        )
        return resp.status_code, name if resp.status_code == 200 else f"{name}: {resp.text}"

    answers: dict[int, list[str]] = {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for code, text in pool.map(one, archives):
            answers.setdefault(code, []).append(text)
    return answers


def run_burst(
    server: LiveServer, count: int = UPLOADS, threads: int = UPLOAD_THREADS
) -> tuple[dict[int, list[str]], Churn]:
    """The burst while one plugin is deployed, redeployed and undeployed in a loop."""
    with server.client() as c:
        name = unique_name("churn")
        plugin_id = upload(c, name, plugin_archive(name))
    churn = Churn(server, plugin_id)
    thread = threading.Thread(target=churn.run, name="churn", daemon=True)
    thread.start()
    try:
        answers = upload_burst(server, count, threads)
    finally:
        churn.stop.set()
        thread.join(120)
    return answers, churn


@pytest.mark.e2e
@pytest.mark.slow
def test_upload_burst_while_replicas_come_and_go(tmp_path: Path) -> None:
    server = LiveServer(home=tmp_path / "home").start()
    try:
        answers, churn = run_burst(server)
    finally:
        server.stop()
    log = server.logs()
    assert INSTALLED_LINE in log, "the server ran without its close check"
    assert_no_fd_errors(log)
    # a stream transport or socket nobody closed is closed by the collector, twice under
    # uvloop (libuv's close and the socket's finalizer), from any thread
    assert [line for line in log.splitlines() if GC_CLOSE_PREFIX in line] == []
    assert set(answers) == {200}, {code: texts[:3] for code, texts in answers.items()}
    assert len(answers[200]) == UPLOADS
    assert churn.errors == []
    assert churn.cycles >= 1, "no replica started and stopped during the burst"
