"""The request path: route lookup, calls to replicas, held routes, per-call counters, and the
plain ASGI layers that answer inference calls, status polls and forwarded peer calls ahead of
FastAPI."""
