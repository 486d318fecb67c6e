"""The settings of the egress proxy: which hosts a namespace's plugins may reach, and how; a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class EgressFields(BaseSettings):
    """Settings of the egress proxy: which hosts a namespace's plugins may reach, and how."""

    egress_allow: str = Field(
        default="",
        description="per-namespace allowlists of the egress proxy, "
        "`ns_a=api.example.com:443,*.cdn.example;ns_b=10.0.0.5:8080`: each entry is "
        "`host[:port]` (no port: 80 and 443; `*.example.com` matches its subdomains). A "
        "listed namespace's plugins reach only these, through the server's HTTP CONNECT "
        "proxy (`HTTPS_PROXY` is set for them); loopback, link-local and private addresses "
        "only when named exactly (not through a wildcard). Local backend only",
    )
    egress_max_connections: int = Field(
        default=32,
        ge=1,
        description="open connections through the egress proxy per namespace; more are "
        "answered 503",
    )
    egress_idle_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="seconds an egress proxy connection may pass no byte before it is closed",
    )
    egress_connect_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="seconds the egress proxy waits for a name lookup and a connection to the "
        "destination",
    )
