"""HTTP layer: routers, wire schemas, auth dependency and the one error handler."""
