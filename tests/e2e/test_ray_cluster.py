"""A two-node Ray cluster on this machine: a `ray start --head` and a second `ray start
--address` with CPUs of its own. A plugin with two replicas gets one on each node (the
server reaches the head's worker over its Unix socket and the other node's over the
authenticated TCP relay); killing the worker node's raylet moves its replica to the head
while the route keeps answering. Also: `ray://` addresses are refused at start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from deploy_support import deploy, infer, plugin_archive, upload, wait_for
from ray_support import JOIN_ENV, RAY_AVAILABLE, RAY_SKIP_REASON, RayHead
from support import LiveServer, free_port, unique_name

pytestmark = pytest.mark.skipif(not RAY_AVAILABLE, reason=RAY_SKIP_REASON)


@dataclass
class RayWorkerNode:
    """`ray start --address=HEAD --block` in its own session: a second node."""

    head: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, attempts: int = 3) -> RayWorkerNode:
        """Start the node; on a busy machine Ray's own start-up can time out, so retry."""
        for attempt in range(attempts):
            try:
                return self._start_once()
            except RuntimeError:
                self.stop()
                if attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> RayWorkerNode:
        ray_cli = Path(sys.executable).with_name("ray")
        cmd = [
            str(ray_cli), "start", f"--address={self.head}", "--block", "--num-cpus=2",
            f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats",
        ]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **JOIN_ENV}
        self.proc = subprocess.Popen(
            cmd, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "Ray runtime started" in text:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker node failed:\n{text}")
            time.sleep(0.2)
        raise RuntimeError("worker node not up")

    def session_pids(self) -> list[int]:
        assert self.proc is not None
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[3]) == self.proc.pid:
                    pids.append(int(entry.name))
        return pids

    def raylet_pid(self) -> int:
        for pid in self.session_pids():
            try:
                exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if exe.endswith(b"/raylet"):
                return pid
        raise AssertionError("no raylet in the worker node's session")

    def stop(self) -> None:
        for pid in self.session_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RayWorkerNode]]:
    folder = tmp_path_factory.mktemp("ray-two-nodes")
    head = RayHead(folder / "head.log").start()
    node = RayWorkerNode(head.address, folder / "node.log")
    try:
        node.start()
        yield head.address, node
    finally:
        node.stop()
        head.stop()


def ray_nodes(server: LiveServer) -> dict[str, dict[str, object]]:
    return dict(httpx.get(f"{server.url}/healthz", timeout=10).json()["sandbox"]["ray_nodes"])


def test_two_replicas_spread_over_both_nodes_and_survive_a_dead_node(
    cluster: tuple[str, RayWorkerNode], tmp_path: Path
) -> None:
    address, node = cluster
    env = {"PLUGHOST_BACKEND": "ray", "PLUGHOST_RAY_ADDRESS": address,
           "PLUGHOST_REPLICA_START_TIMEOUT_S": "120", **JOIN_ENV}
    srv = LiveServer(home=tmp_path / "srv", extra_env=env).start()
    try:
        name = unique_name("spread")
        archive = plugin_archive(
            name, extra_manifest='serve_config = {"num_replicas": 2, "num_cpus": 1}'
        )
        with srv.client() as c:
            pid = upload(c, name, archive)
            route = deploy(c, pid)["route_prefix"]
            wait_for(c, pid, {"deployed"}, timeout=180)
            nodes = ray_nodes(srv)
            assert len(nodes) == 2, nodes  # one replica per node
            assert all(not n["missing"] for n in nodes.values()), nodes
            seen = {infer(c, route, {"text": str(i)}).json()["replica"] for i in range(20)}
            assert len(seen) == 2, seen

            failures: list[str] = []
            answered = [0]
            stop = threading.Event()

            def load() -> None:
                with srv.client() as lc:
                    while not stop.is_set():
                        resp = infer(lc, route, {"text": "x"})
                        if resp.status_code != 200:
                            failures.append(resp.text)
                        answered[0] += 1

            thread = threading.Thread(target=load)
            thread.start()
            time.sleep(1.0)
            os.kill(node.raylet_pid(), signal.SIGKILL)
            deadline = time.monotonic() + 120
            try:
                while time.monotonic() < deadline:
                    nodes = ray_nodes(srv)
                    current = {infer(c, route, {}).json()["replica"] for _ in range(10)}
                    if len(nodes) == 1 and len(current) == 2 and current != seen:
                        break
                    time.sleep(0.5)
            finally:
                stop.set()
                thread.join(30)
            assert len(nodes) == 1, nodes  # both replicas now on the head
            assert len(current) == 2 and len(current - seen) == 1, (seen, current)
            assert answered[0] > 50
            assert failures == [], failures[:3]
            assert c.get(f"/v1/namespaces/ns_default/plugins/{pid}/status").json()[
                "status"] == "deployed"
    finally:
        srv.stop()


def test_ray_client_addresses_are_refused_at_start(tmp_path: Path) -> None:
    env = {"PLUGHOST_BACKEND": "ray", "PLUGHOST_RAY_ADDRESS": "ray://127.0.0.1:10001"}
    srv = LiveServer(home=tmp_path / "client", extra_env=env)
    with pytest.raises(RuntimeError, match=r"ray://.*not supported"):
        srv.start()
