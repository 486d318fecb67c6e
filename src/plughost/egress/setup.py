"""The egress proxy of a server, built from its settings (:mod:`plughost.server.wiring`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from plughost.egress.folders import egress_root
from plughost.egress.policy import PatternError, parse_allow_setting
from plughost.egress.proxy import Allowlist, EgressProxy, Limits

if TYPE_CHECKING:
    from plughost.config import Settings
    from plughost.sandbox.host import Sandbox

log = logging.getLogger("plughost.egress")


def build_egress(settings: Settings, sandbox: Sandbox) -> EgressProxy | None:
    """The proxy whose sockets the sandbox binds in for namespaces with an allowlist
    (``PLUGHOST_EGRESS_ALLOW``); None when the sandbox is off (plugins then have the host's
    network anyway) or on the Ray backend (its replicas run on other nodes, out of reach of
    this server's sockets: allowlisted namespaces get no network there). It starts its
    thread with its first socket; an earlier server's sockets are listened on again by
    :func:`add_allowlist`, once every source of allowlists is known."""
    try:
        table = parse_allow_setting(settings.egress_allow)
    except PatternError as exc:
        raise ValueError(f"PLUGHOST_EGRESS_ALLOW: {exc}") from exc
    if not sandbox.enabled:
        if table:
            log.warning("PLUGHOST_EGRESS_ALLOW has no effect with PLUGHOST_SANDBOX=off")
        return None
    if settings.backend != "local":
        if table:
            log.error(
                "PLUGHOST_EGRESS_ALLOW is not supported on the %s backend (its plugin "
                "processes run on other nodes, out of reach of this server's egress proxy): "
                "namespaces %s get no network",
                settings.backend,
                ", ".join(sorted(table)),
            )
        return None
    limits = Limits(
        max_connections=settings.egress_max_connections,
        idle_timeout_s=settings.egress_idle_timeout_s,
        connect_timeout_s=settings.egress_connect_timeout_s,
    )
    root = egress_root(settings.resolved_home)
    return EgressProxy(root, lambda ns: table.get(ns, ()), limits, names=table.keys)


def add_allowlist(
    proxy: EgressProxy | None,
    source: Allowlist | None,
    names: Callable[[], Iterable[str]] | None = None,
) -> None:
    """Let ``source`` (the namespace policies of the admin API and CLI) add entries to the
    setting's, then listen again on the sockets of an earlier server whose namespace still
    has an allowlist (its replicas are adopted). ``names``: the namespaces ``source`` may
    give entries to (what ``/healthz`` lists, with the setting's)."""
    if proxy is None:
        return
    if source is not None:
        first = proxy.allowlist
        proxy.allowlist = lambda ns: (*first(ns), *source(ns))
    if names is not None:
        known = proxy.names
        proxy.names = lambda: (*known(), *names())
    proxy.restore()
