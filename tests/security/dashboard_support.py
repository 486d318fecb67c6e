"""Support for the dashboard's security tests: hostile plugin text, a browser, a second origin.

``PAYLOAD`` holds every markup breakout a plugin might put in text the dashboard shows (its
description, the error its deploy fails with, its log lines): run, any of them sets
``window.__pwned`` and changes ``document.title``. ``EvilOrigin`` serves one page from a
second local HTTP server (another port, so another origin) for the cross-site tests.
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import httpx
from support import PIPELINE, LiveServer, free_port, zip_bytes

NS = "ns_default"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TITLE = "plughost dashboard"

# one string, each breakout on its own line; double quotes are left out (it is also the
# value of a Python string literal in the plugin's manifest and code)
BREAKOUTS = [
    "<script>window.__pwned = 'script'; document.title = 'pwned'</script>",
    "<img src=x onerror=window.__pwned=7>",
    "<a href='javascript:window.__pwned=1'>link</a>",
    "</textarea></pre></title><svg onload='window.__pwned=2'></svg>",
    "<iframe srcdoc='<script>parent.__pwned=3</script>'></iframe>",
]
PAYLOAD = "\n".join(BREAKOUTS)
# what the dashboard must show as text: the breakouts themselves, character for character
VISIBLE = [
    "<script>window.__pwned = 'script'",
    "<img src=x onerror=",
    "javascript:",
    "</textarea></pre>",
    "<svg onload=",
    "<iframe srcdoc=",
]

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
description = {payload!r}
dependencies = []
features = []
serve_config = {{"num_replicas": 1}}
"""

# prints the payload (a log line) and fails to start with it (the deployment's error)
FAILING_REALTIME = """
try:
    from shared.plugins.inference.serve import BaseInferenceService
except ImportError:
    class BaseInferenceService:
        def __init__(self, **kwargs):
            self.config = kwargs

PAYLOAD = {payload!r}


class Service(BaseInferenceService):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for line in PAYLOAD.splitlines():
            print(line, flush=True)
        raise RuntimeError(PAYLOAD)

    def run_inference(self, inputs, parameters):
        return {{}}
"""

OK_REALTIME = """
try:
    from shared.plugins.inference.serve import BaseInferenceService
except ImportError:
    class BaseInferenceService:
        def __init__(self, **kwargs):
            self.config = kwargs


class Service(BaseInferenceService):
    def run_inference(self, inputs, parameters):
        return {"ok": True}
"""


def hostile_archive(name: str) -> bytes:
    """A plugin whose manifest description, start-up log and start-up error hold PAYLOAD."""
    return zip_bytes(
        {
            "manifest.py": MANIFEST.format(name=name, payload=PAYLOAD),
            "pipeline.py": PIPELINE,
            "realtime.py": FAILING_REALTIME.format(payload=PAYLOAD),
        }
    )


def ok_archive(name: str) -> bytes:
    return zip_bytes(
        {
            "manifest.py": MANIFEST.format(name=name, payload="a harmless plugin"),
            "pipeline.py": PIPELINE,
            "realtime.py": OK_REALTIME,
        }
    )


def upload(c: httpx.Client, name: str, archive: bytes) -> str:
    resp = c.post(
        f"/v1/namespaces/{NS}/plugins",
        data={"name": name, "version": "1.0.0"},
        files={"file": ("plugin.zip", archive, "application/zip")},
    )
    body = resp.json()
    assert resp.status_code == 200 and body["success"], body
    return str(body["plugin_id"])


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium through Playwright (as tests/e2e/test_dashboard.py)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.url}/ui")
    page.fill("#key", server.key)
    page.click("#signin")
    page.wait_for_selector("#app:not([hidden])")


def pwned(page: Any) -> tuple[Any, str]:
    """What a payload that ran would have left: window.__pwned and the document's title."""
    return page.evaluate("window.__pwned"), page.title()


class EvilOrigin:
    """A second HTTP server on 127.0.0.1 and another port (another origin) serving ``html``
    at ``/``; the hostile page of the cross-site tests."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def csrf_page(target: str, form_action: str, fetch_actions: list[tuple[str, str]]) -> str:
    """A page that, on load, posts a form to ``form_action`` (into a hidden frame) and sends
    each ``(method, path)`` with fetch() three ways: with the browser's credentials, with an
    Authorization header it cannot know (a CORS preflight), and as a no-cors request. It sets
    ``window.__done`` when every attempt has ended, and lists their outcomes."""
    attempts = ",\n".join(f"[{m!r}, {target + p!r}]" for m, p in fetch_actions)
    return f"""<!doctype html><html><body>
<iframe name="sink" style="display:none"></iframe>
<form id="f" method="POST" action="{target}{form_action}" target="sink"
      enctype="application/x-www-form-urlencoded">
  <input name="version" value="1.0.0">
</form>
<script>
window.__outcomes = [];
const tries = [{attempts}];
async function attempt(method, url) {{
  const shapes = [
    {{ method, credentials: "include" }},
    {{ method, credentials: "include", headers: {{ Authorization: "Bearer guessed" }} }},
    {{ method, mode: "no-cors", credentials: "include", body: "x=1",
       headers: {{ "Content-Type": "text/plain" }} }},
  ];
  for (const shape of shapes) {{
    try {{
      const r = await fetch(url, shape);
      window.__outcomes.push([method, url, r.type, r.status]);
    }} catch (e) {{
      window.__outcomes.push([method, url, "error", String(e)]);
    }}
  }}
}}
document.getElementById("f").submit();
Promise.all(tries.map(([m, u]) => attempt(m, u))).then(() => {{ window.__done = true; }});
</script></body></html>"""


def chromium_missing() -> bool:
    return not Path(CHROMIUM).exists()
