"""How the sandbox wraps a namespace with an egress allowlist: its own network namespace kept,
the proxy's folder bound read-only, inet sockets allowed by seccomp (loopback only there), the
relay's variable set, no pool member; and nothing of it for other namespaces, for the
full-egress setting, or on a machine without a private network namespace."""

from __future__ import annotations

from pathlib import Path

from plughost.egress import EGRESS_MOUNT, SOCKET_ENV
from plughost.sandbox.host import Sandbox, SandboxConfig
from plughost.sandbox.policy import RunnerPolicy
from plughost.sandbox.uids import UidPool

ALL_LAYERS = {"bwrap": True, "netns": True, "uid": True, "seccomp": True, "rlimits": True}


class FakeProxy:
    def __init__(self, folder: Path, listed: set[str]) -> None:
        self.folder, self.listed, self.bound = folder, listed, []

    def wants(self, namespace_id: str | None) -> bool:
        return namespace_id in self.listed

    def bind_dir(self, namespace_id: str | None, caller: str) -> Path | None:
        self.bound.append((namespace_id, caller))
        return self.folder


def _sandbox(tmp_path: Path, share_net_only: bool = False) -> tuple[Sandbox, FakeProxy]:
    config = SandboxConfig(
        mode="strict",
        egress_namespaces=frozenset({"ns_out", "ns_both"}),
        uid_base=7000,
        uid_count=10,
    )
    sandbox = Sandbox(
        config,
        dict(ALL_LAYERS),
        bwrap_path="/usr/bin/bwrap",
        uids=UidPool(7000, 10),
        share_net_only=share_net_only,
    )
    proxy = FakeProxy(tmp_path / "sock-folder", {"ns_list", "ns_both"})
    sandbox.egress_proxy = proxy  # type: ignore[assignment]
    return sandbox, proxy


def _bind_of(prefix: tuple[str, ...]) -> tuple[str, str] | None:
    for i, arg in enumerate(prefix):
        if arg == "--ro-bind" and prefix[i + 2] == EGRESS_MOUNT:
            return prefix[i + 1], prefix[i + 2]
    return None


def test_an_allowlisted_namespace_gets_the_socket_folder_and_inet(tmp_path: Path) -> None:
    sandbox, proxy = _sandbox(tmp_path)
    plugin_dir = tmp_path / "deployments" / "r7"
    plugin_dir.mkdir(parents=True)
    launch = sandbox.replica_launch(plugin_dir, "ns_list", {})
    assert launch is not None
    assert "--unshare-net" in launch.prefix  # still no network of its own but loopback
    assert _bind_of(launch.prefix) == (str(proxy.folder), EGRESS_MOUNT)
    assert RunnerPolicy.from_json(launch.policy_json).allow_inet is True
    assert launch.env[SOCKET_ENV] == f"{EGRESS_MOUNT}/proxy.sock"
    assert proxy.bound == [("ns_list", "r7")]
    assert not sandbox.poolable("ns_list", {}, None)


def test_other_namespaces_get_nothing(tmp_path: Path) -> None:
    sandbox, proxy = _sandbox(tmp_path)
    launch = sandbox.replica_launch(tmp_path, "ns_default", {})
    assert launch is not None and "--unshare-net" in launch.prefix
    assert _bind_of(launch.prefix) is None and SOCKET_ENV not in launch.env
    assert RunnerPolicy.from_json(launch.policy_json).allow_inet is False
    assert sandbox.poolable("ns_default", {}, None) and proxy.bound == []


def test_full_egress_keeps_the_host_network_without_the_proxy(tmp_path: Path) -> None:
    sandbox, proxy = _sandbox(tmp_path)
    for namespace in ("ns_out", "ns_both"):
        launch = sandbox.replica_launch(tmp_path, namespace, {})
        assert launch is not None and "--unshare-net" not in launch.prefix
        assert RunnerPolicy.from_json(launch.policy_json).allow_inet is True
        assert _bind_of(launch.prefix) is None and SOCKET_ENV not in launch.env
    assert proxy.bound == []


def test_without_a_private_network_namespace_an_allowlist_gives_no_network(
    tmp_path: Path,
) -> None:
    sandbox, proxy = _sandbox(tmp_path, share_net_only=True)
    launch = sandbox.replica_launch(tmp_path, "ns_list", {})
    assert launch is not None
    assert RunnerPolicy.from_json(launch.policy_json).allow_inet is False
    assert _bind_of(launch.prefix) is None and SOCKET_ENV not in launch.env
    assert proxy.bound == []
