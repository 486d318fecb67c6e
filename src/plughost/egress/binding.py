"""How the sandbox (:class:`plughost.sandbox.host.Sandbox`) binds the egress proxy in.

A namespace listed in ``PLUGHOST_SANDBOX_EGRESS_NAMESPACES`` keeps the host's whole network, as
before; a namespace with an allowlist (and no such listing) keeps bubblewrap's private network
namespace, gets the proxy's folder bound read-only at :data:`plughost.egress.EGRESS_MOUNT`,
the variable telling its bootstrap to start the relay, and a seccomp filter that allows inet
sockets (the namespace has only loopback, where the relay listens).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from plughost.egress import EGRESS_MOUNT, SOCKET_ENV, SOCKET_NAME
from plughost.egress.folders import caller_of

if TYPE_CHECKING:
    from plughost.sandbox.host import Sandbox
    from plughost.sandbox.policy import SandboxLaunch

log = logging.getLogger("plughost.sandbox")


def egress_listed(sandbox: Sandbox, namespace_id: str | None) -> bool:
    """Whether the namespace reaches the network only through the egress proxy."""
    proxy = sandbox.egress_proxy
    return (
        proxy is not None and not sandbox.egress_allowed(namespace_id) and proxy.wants(namespace_id)
    )


def egress_binding(sandbox: Sandbox, namespace_id: str | None, plugin_dir: Path) -> Path | None:
    """The proxy's folder to bind into a sandbox of ``namespace_id`` (None: no allowlist, or
    no private network namespace on this machine, when the plugin gets no network at all)."""
    proxy = sandbox.egress_proxy
    if proxy is None or not egress_listed(sandbox, namespace_id):
        return None
    if not sandbox.wraps or sandbox.share_net_only:
        log.error(
            "sandbox: namespace %s has an egress allowlist, but without bubblewrap's own "
            "network namespace here its plugins would share the host's network: they get no "
            "network at all",
            namespace_id,
        )
        return None
    return proxy.bind_dir(namespace_id, caller_of(plugin_dir))


def egress_env(proxy_dir: Path | None) -> dict[str, str]:
    """What tells the sandbox's bootstrap to start the relay (nothing without a folder)."""
    return {SOCKET_ENV: f"{EGRESS_MOUNT}/{SOCKET_NAME}"} if proxy_dir is not None else {}


def egress_unbind(sandbox: Sandbox, launch: SandboxLaunch | None) -> None:
    """The sandbox of ``launch`` has ended: its proxy socket may close (a batch job's)."""
    proxy = sandbox.egress_proxy
    if proxy is None or launch is None:
        return
    prefix = launch.prefix
    for i in range(len(prefix) - 2):
        if prefix[i] == "--ro-bind" and prefix[i + 2] == EGRESS_MOUNT:
            proxy.unbind(Path(prefix[i + 1]))


def egress_release_gone(
    sandbox: Sandbox | None, namespace_id: str | None, plugin_dir: Path
) -> None:
    """The group of the release in ``plugin_dir`` has stopped (undeploy, rollout done, failed
    start or replicas, server stop without keep-on-stop): no replica of it is left on this
    server, so its proxy socket closes (a group left running, :meth:`detach`, keeps it)."""
    proxy = sandbox.egress_proxy if sandbox is not None else None
    if proxy is not None and namespace_id is not None:
        proxy.release_gone(namespace_id, caller_of(plugin_dir))
