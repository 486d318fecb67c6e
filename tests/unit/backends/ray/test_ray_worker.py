"""The Ray replica's worker host without Ray: the sandboxed worker it starts, the relay's
HMAC handshake, the server's direct channels to it, and the replica directory."""

from __future__ import annotations

import asyncio
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from plughost.backends.ray.direct import DirectSet, open_tcp
from plughost.backends.ray.directory import ReplicaDirectory
from plughost.backends.ray.node import WorkerConfig, drop_hidden_import_paths
from plughost.backends.ray.relay import MAGIC, NONCE_BYTES
from plughost.backends.ray.worker import WorkerHost
from plughost.errors import CallFailed

REALTIME = """
import os


class Service:
    def __call__(self, inputs, parameters):
        if inputs.get("boom"):
            raise ValueError("boom")
        return {"echo": inputs.get("text"), "pid": os.getpid()}


def get_inference_service(**kwargs):
    return Service()
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerHost]:
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "realtime.py").write_text(textwrap.dedent(REALTIME))
    worker = WorkerHost(
        folder, {}, WorkerConfig(sandbox={"mode": "off"}, release_id=7), (), None,
        exit_with_worker=False,
    )
    try:
        yield worker
    finally:
        worker.close()


def info_of(host: WorkerHost, node_id: str = "node-a") -> dict[str, object]:
    return {"node_id": node_id, "host": host.address, "port": host.tcp_port,
            "unix": str(host.socket_path), "secret": host.secret.hex()}


async def _direct(host: WorkerHost, node_id: str) -> DirectSet:
    direct = DirectSet("app", "node-a", call_timeout_s=5)
    direct.update({"r1": info_of(host, node_id)})
    deadline = asyncio.get_running_loop().time() + 30
    while not direct.ready and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    return direct


@pytest.mark.parametrize(("node_id", "via"), [("node-a", "unix"), ("node-b", "tcp")])
def test_server_calls_the_worker_over_the_socket_or_the_relay(
    host: WorkerHost, node_id: str, via: str
) -> None:
    async def run() -> None:
        direct = await _direct(host, node_id)
        try:
            assert direct.workers["r1"].via == via
            body = await direct.call_body(b'{"inputs": {"text": "hi"}, "parameters": {}}')
            assert orjson.loads(body)["echo"] == "hi"
            with pytest.raises(CallFailed, match="boom"):
                await direct.call_body(b'{"inputs": {"boom": 1}}')
            assert await direct.health()
        finally:
            direct.close()

    asyncio.run(run())


def test_relay_refuses_a_client_without_the_secret(host: WorkerHost) -> None:
    with socket.create_connection((host.address, host.tcp_port), timeout=5) as sock:
        head = b""
        while len(head) < len(MAGIC) + NONCE_BYTES:
            head += sock.recv(64)
        assert head.startswith(MAGIC)
        sock.sendall(b"\0" * 32 + b"R" + b'{"id": 1, "op": "health"}\n')
        assert sock.recv(1024) == b""  # closed, nothing relayed


def test_relay_needs_the_right_secret(host: WorkerHost) -> None:
    async def run() -> None:
        with pytest.raises(ConnectionError):
            sock = await open_tcp(host.address, host.tcp_port, b"x" * 32)
            try:
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(sock, b"\0\0\0\x10" + b"{}" * 8)
                if not await loop.sock_recv(sock, 10):
                    raise ConnectionError("closed")
            finally:
                sock.close()

    asyncio.run(run())


def test_worker_socket_is_private(host: WorkerHost) -> None:
    assert host.socket_path.parent.stat().st_mode & 0o777 == 0o700
    assert host.socket_path.name == "r7-ray.sock"


def test_directory_long_poll_sees_registrations() -> None:
    async def run() -> None:
        directory = ReplicaDirectory()
        version, listing = await directory.changes(-1, 0.1)
        assert listing == {}
        waiter = asyncio.ensure_future(directory.changes(version, 5))
        await asyncio.sleep(0.01)
        await directory.register("app", "r1", {"port": 1})
        new_version, listing = await waiter
        assert new_version > version and listing == {"app": {"r1": {"port": 1}}}
        await directory.unregister("app", "r1")
        await directory.forget("app")
        assert (await directory.changes(-1, 0))[1] == {}

    asyncio.run(run())


def test_hidden_folders_leave_the_import_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = [str(home), str(tmp_path), "/usr/lib/python3", str(home / "sub"), ""]
    drop_hidden_import_paths(path, (home,))
    assert path == ["/usr/lib/python3", ""]


def test_probe_result_is_reused_per_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plughost.backends.ray import node as ray_node
    from plughost.sandbox.policy import SandboxConfig
    from plughost.sandbox.probe import ProbeResult

    calls: list[int] = []
    layers = dict.fromkeys(("bwrap", "netns", "uid", "seccomp", "rlimits"), True)

    def probe(config: SandboxConfig) -> ProbeResult:
        calls.append(1)
        return ProbeResult(dict(layers), "/usr/bin/bwrap", False, {"reasons": {}})

    monkeypatch.setattr(ray_node, "probe_layers", probe)
    cache = tmp_path / "cache"
    first = ray_node.create_sandbox(SandboxConfig(mode="auto"), cache)
    second = ray_node.create_sandbox(SandboxConfig(mode="auto"), cache)
    assert calls == [1] and first.layers == second.layers == layers
    ray_node.create_sandbox(SandboxConfig(mode="auto", memory_gb=3), cache)
    assert calls == [1, 1]  # another configuration probes again


def test_the_servers_warm_up_probe_is_what_the_first_replica_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server probes its node when it connects to Ray (a real probe here); a replica
    with the same sandbox fields then starts without probing again."""
    from plughost.backends.ray import node as ray_node
    from plughost.sandbox.policy import SandboxConfig

    fields = ray_node.sandbox_fields(SandboxConfig(mode="auto"))
    cache = tmp_path / "cache"
    ray_node.warm_probe(fields, cache)
    assert len(list(cache.glob("probe-*.json"))) == 1
    measured = ray_node.create_sandbox(SandboxConfig(mode="auto"), tmp_path / "fresh")

    def no_probe(config: SandboxConfig) -> None:
        raise AssertionError("the replica probed again")

    monkeypatch.setattr(ray_node, "probe_layers", no_probe)
    replica = ray_node.create_sandbox(WorkerConfig(sandbox=fields).sandbox_config(), cache)
    assert replica.layers == measured.layers


def test_the_warm_up_probe_does_nothing_with_the_sandbox_off(tmp_path: Path) -> None:
    from plughost.backends.ray import node as ray_node
    from plughost.sandbox.policy import SandboxConfig

    ray_node.warm_probe(ray_node.sandbox_fields(SandboxConfig(mode="off")), tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_a_shared_cache_folder_is_refused(tmp_path: Path) -> None:
    from plughost.backends.ray import node as ray_node

    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(RuntimeError, match="not a private folder"):
        ray_node._own_folder(folder)


def test_a_node_without_bubblewrap_reports_the_missing_layers_or_refuses_in_strict(
    tmp_path: Path,
) -> None:
    from plughost.sandbox.host import SandboxUnavailable

    (tmp_path / "realtime.py").write_text(textwrap.dedent(REALTIME))
    no_bwrap = {"bwrap": "no-such-bwrap-binary"}
    worker = WorkerHost(
        tmp_path, {}, WorkerConfig(sandbox={"mode": "auto", **no_bwrap}), (), None,
        exit_with_worker=False,
    )
    try:
        assert {"bwrap", "netns"} <= set(worker.missing_layers)
        assert worker.health()
    finally:
        worker.close()
    with pytest.raises(SandboxUnavailable, match="strict.*bwrap"):
        WorkerHost(
            tmp_path, {}, WorkerConfig(sandbox={"mode": "strict", **no_bwrap}), (), None,
            exit_with_worker=False,
        )


def test_the_models_folders_reach_ray_processes_in_the_sandbox_fields() -> None:
    from pathlib import Path

    from plughost.backends.ray.node import WorkerConfig, sandbox_fields
    from plughost.sandbox.policy import SandboxConfig

    config = SandboxConfig(models_root=Path("/srv/models/ns"), hf_cache=Path("/srv/hf"))
    back = WorkerConfig(sandbox=sandbox_fields(config)).sandbox_config()
    assert (back.models_root, back.hf_cache) == (Path("/srv/models/ns"), Path("/srv/hf"))
    plain = WorkerConfig(sandbox=sandbox_fields(SandboxConfig())).sandbox_config()
    assert (plain.models_root, plain.hf_cache) == (None, None)
