"""The dashboard at /ui: one server-rendered Jinja2 page and a small script.

The page holds no data: the browser signs in with an API key (kept in sessionStorage) and
calls the JSON API with it as a Bearer token, so the dashboard sees exactly what the key
may see. Live status comes from the status watch (server-sent events read with fetch, since
EventSource cannot send an Authorization header); figures and logs are polled. No CDN, no
build step: the script and the style sheet are files beside this module.

Plugin-controlled text (descriptions, status and error messages, log lines) reaches the page
only through ``textContent`` and ``createTextNode`` in the script, never as markup, and the
page's Content-Security-Policy allows no inline script at all, so a payload that slipped
through would still not run. No cookie is ever set: the key travels only in the
Authorization header the script adds, which a cross-site form or a cross-origin fetch cannot
send (the API answers no CORS preflight), so the dashboard's actions cannot be forged from
another site.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from plughost import __version__
from plughost.errors import NotFoundError

HERE = Path(__file__).resolve().parent
STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}

if TYPE_CHECKING:
    from jinja2 import Environment

router = APIRouter(tags=["dashboard"], include_in_schema=False)

# no inline script or style, no eval, no plugins, no framing, forms only to this origin
CSP_DIRECTIVES = [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
]
CONTENT_SECURITY_POLICY = "; ".join(CSP_DIRECTIVES)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@functools.cache
def _env() -> Environment:
    """Jinja2 on the first page asked for: a server nobody looks at does not hold it."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
    )


@router.get("/ui", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    html = _env().get_template("dashboard.html").render(version=__version__)
    return HTMLResponse(html, headers={"Cache-Control": "no-store", **SECURITY_HEADERS})


@router.get("/ui/static/{name}")
def static(name: str) -> Response:
    media = STATIC.get(name)
    if media is None:  # only the files named above: no path ever reaches the disk
        raise NotFoundError(f"no static file {name!r}")
    return Response(
        (HERE / "static" / name).read_bytes(),
        media_type=media,
        headers={"Cache-Control": "no-cache", **SECURITY_HEADERS},
    )
