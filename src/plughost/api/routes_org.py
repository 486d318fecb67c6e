"""Organization-level registry endpoints: /v1/plugins... (the namespace twins' handlers,
from :mod:`.plugin_routes`, with the organization as scope)."""

from __future__ import annotations

from fastapi import APIRouter

from plughost.api.deps import org_scope
from plughost.api.plugin_routes import add_plugin_routes, add_upload_routes

router = APIRouter(prefix="/v1/plugins", tags=["organization plugins"])
add_upload_routes(router, org_scope)
add_plugin_routes(router, org_scope)
