"""HTTP layer: routers, wire schemas, auth dependency and the one error handler."""

# registers the {plugin_id:...} and {batch_id:...} path convertors before any router is built
from plughost.api import paths as _paths  # noqa: F401
