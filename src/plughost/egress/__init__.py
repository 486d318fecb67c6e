"""The egress proxy: the only way out of the sandbox for a namespace given an allowlist.

- :mod:`.policy`: the allowlist's patterns, and the decision for one destination (which
  addresses are refused unless named exactly);
- :mod:`.proxy`: the server's HTTP CONNECT (and absolute-form ``GET http://``) proxy, one Unix
  socket per namespace and plugin folder, bound into the sandbox;
- :mod:`.relay`: started inside the sandbox before plugin code, it listens on the sandbox's
  private loopback and relays to that socket, so ``HTTPS_PROXY=http://127.0.0.1:<port>``
  works for urllib, requests and httpx.
"""

EGRESS_MOUNT = "/plughost-egress"
"""Where the proxy's folder is seen inside the sandbox (read-only; the socket is in it)."""
SOCKET_NAME = "proxy.sock"
SOCKET_ENV = "PLUGHOST_EGRESS_SOCKET"
"""The variable naming the proxy socket for the relay (set only for allowlisted namespaces)."""
