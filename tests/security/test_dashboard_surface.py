"""The dashboard as an attack surface, in headless Chromium (issue 28, "The dashboard").

A plugin controls text the dashboard shows: its manifest description, the error its deploy
fails with, the lines it prints. Each of them here holds every markup breakout of
``dashboard_support.PAYLOAD``; the page must show them as text and never run them. The
page's Content-Security-Policy must stop inline script even if markup got in. And the
dashboard's actions (deploy, undeploy, rollback, delete, ...) must need the key and not be
reachable from another site: the key lives in the tab's sessionStorage and travels only in
an Authorization header, never a cookie, so a page of another origin has no credential to
send.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dashboard_support import (
    NS,
    PAYLOAD,
    TITLE,
    VISIBLE,
    EvilOrigin,
    chromium,
    chromium_missing,
    csrf_page,
    hostile_archive,
    ok_archive,
    pwned,
    sign_in,
    upload,
)
from support import REPO, LiveServer, unique_name

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.security,
    pytest.mark.skipif(chromium_missing(), reason="chromium is not installed (make browser-deps)"),
]
MUTATING = {"post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(home=tmp_path_factory.mktemp("dashboard-surface"))
    try:
        srv.start(timeout=180)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def hostile(server: LiveServer) -> str:
    """A plugin whose description, start-up log and failed deployment hold PAYLOAD."""
    name = unique_name("xss")
    with server.client() as c:
        pid = upload(c, name, hostile_archive(name))
        assert c.post(f"/v1/namespaces/{NS}/plugins/{pid}/deploy").status_code == 200
    return pid


def test_plugin_text_is_shown_as_text_and_never_runs(
    server: LiveServer, browser: Any, hostile: str
) -> None:
    expect = sync_api.expect
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    violations: list[str] = []
    page.on(
        "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
    )
    sign_in(page, server)
    page.click(f"tr[data-plugin-id='{hostile}']")
    expect(page.locator("#d-status")).to_have_text("failed", timeout=120_000)
    # every place the page shows plugin text: the payload is there, as text
    expect(page.locator("#d-description")).to_have_text(PAYLOAD)
    expect(page.locator("#d-error")).to_contain_text(VISIBLE[0], timeout=15_000)
    expect(page.locator("#logs")).to_contain_text(VISIBLE[-1], timeout=30_000)
    # the history's event message carries the error's first line: the <script> breakout
    expect(page.locator("#timeline")).to_contain_text(VISIBLE[0], timeout=15_000)
    for where in ("#d-description", "#d-error", "#logs"):
        text = page.locator(where).inner_text()
        for piece in VISIBLE:
            assert piece in text, (where, piece, text)
    print(
        "TIMELINE",
        page.locator("#timeline").inner_text(),
        "MESSAGE",
        page.locator("#d-message").inner_text(),
        "ERROR",
        page.locator("#d-error").inner_text(),
    )
    page.wait_for_timeout(4000)  # a poll of logs and history more, an onerror's image load
    assert pwned(page) == (None, TITLE)
    # nothing the payload holds became an element of the page
    injected = page.locator(
        "#detail script, #detail img, #detail a, #detail iframe, "
        "#detail svg:not(#chart), #plugins script, #plugins img"
    )
    expect(injected).to_have_count(0)
    assert violations == []  # nothing was even attempted: the text never became markup


def test_the_csp_stops_inline_script_that_got_into_the_page(
    server: LiveServer, browser: Any
) -> None:
    """The second layer: markup slipped in (as a bug using innerHTML would) still cannot run."""
    page = browser.new_page()
    sign_in(page, server)
    page.evaluate(
        """() => {
        const box = document.getElementById('app');
        box.insertAdjacentHTML('beforeend', "<img src=x onerror=window.__pwned='img'>");
        box.insertAdjacentHTML('beforeend', "<a id=js href=javascript:void(window.__pwned='js')>x</a>");
        const s = document.createElement('script');
        s.textContent = "window.__pwned = 'script'";
        document.body.append(s);
      }"""
    )
    page.wait_for_timeout(1500)
    assert pwned(page) == (None, TITLE)
    page.evaluate("document.getElementById('js').click()")
    page.wait_for_timeout(1000)
    assert pwned(page) == (None, TITLE)


def test_the_dashboard_pages_carry_the_security_headers(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for path in ("/ui", "/ui/static/dashboard.js", "/ui/static/dashboard.css"):
            headers = c.get(path).headers
            csp = {
                d.split()[0]: d.split()[1:] for d in headers["content-security-policy"].split("; ")
            }
            assert csp["default-src"] == ["'none'"], csp
            assert csp["script-src"] == ["'self'"], csp  # no 'unsafe-inline', no 'unsafe-eval'
            assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"], csp
            assert csp["form-action"] == ["'self'"] and csp["connect-src"] == ["'self'"], csp
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["x-frame-options"] == "DENY"
            assert "set-cookie" not in headers  # the key is never a cookie


def test_the_script_never_parses_api_text_as_html() -> None:
    script = (REPO / "src/plughost/api/ui/static/dashboard.js").read_text()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        'setAttribute("on',
        "href",
    ):
        assert sink not in script, sink
    template = (REPO / "src/plughost/api/ui/templates/dashboard.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", template)  # no inline script to allow
    assert "|safe" not in template and "autoescape false" not in template


def mutating_operations(server: LiveServer) -> list[tuple[str, str]]:
    """Every mutating operation of the API, with its path parameters filled in."""
    with httpx.Client(base_url=server.url, timeout=60) as c:
        doc = c.get("/openapi.json").json()
    ops = []
    for path, item in doc["paths"].items():
        for method in MUTATING & set(item):
            filled = path.replace("{namespace_id}", NS).replace("{batch_id}", "bat_0a")
            ops.append((method.upper(), re.sub(r"\{[^}]+\}", "abc_1_0_0", filled)))
    assert len(ops) >= 15, ops  # the document lists them (deploy, undeploy, delete, ...)
    return sorted(ops)


def test_every_action_needs_the_key_and_ignores_cookies_and_origin(server: LiveServer) -> None:
    refused = []
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for method, path in mutating_operations(server):
            if path.startswith("/v1/_store/"):
                continue  # signed URLs: tests/security/test_presigned_urls.py
            bare = c.request(method, path)
            # a browser's cross-site request: the key as a cookie, another site's origin
            forged = c.request(
                method,
                path,
                headers={
                    "Origin": "http://evil.example",
                    "Sec-Fetch-Site": "cross-site",
                    "Cookie": f"key={server.key}; plughost.key={server.key}; session={server.key}",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                content=b"version=1.0.0",
            )
            refused.append((method, path, bare.status_code, forged.status_code))
    assert all(b == 401 and f == 401 for _, _, b, f in refused), [
        r for r in refused if r[2:] != (401, 401)
    ]


def test_a_page_of_another_origin_cannot_act_for_a_signed_in_user(
    server: LiveServer, browser: Any
) -> None:
    name = unique_name("csrf")
    with server.client() as c:
        victim = upload(c, name, ok_archive(name))
    base = f"/v1/namespaces/{NS}/plugins"
    context = browser.new_context()
    seen: list[tuple[str, str, int]] = []
    context.on(
        "response",
        lambda r: (
            seen.append((r.request.method, r.url, r.status))
            if r.url.startswith(server.url + "/v1/")
            else None
        ),
    )
    dashboard = context.new_page()
    sign_in(dashboard, server)  # the user is signed in to the dashboard in this browser
    dashboard.click(f"tr[data-plugin-id='{victim}']")
    html = csrf_page(
        server.url,
        f"{base}/{victim}/deploy",
        [
            ("POST", f"{base}/{victim}/deploy"),
            ("POST", f"{base}/{victim}/undeploy"),
            ("POST", f"{base}/by-name/{name}/rollback"),
            ("DELETE", f"{base}/{victim}"),
        ],
    )
    with EvilOrigin(html) as evil:
        page = context.new_page()
        page.goto(evil.url)
        page.wait_for_function("window.__done === true", timeout=60_000)
        outcomes = page.evaluate("window.__outcomes")
    page.wait_for_timeout(2000)  # the form's frame has had its answer
    # the requests did reach the server, which found no key in them
    form = [s for s in seen if s[0] == "POST" and s[1] == f"{server.url}{base}/{victim}/deploy"]
    assert form and all(status == 401 for *_, status in form), seen
    assert all(o[2] in ("error", "opaque") or o[3] == 401 for o in outcomes), outcomes
    with server.client() as c:
        got = c.get(f"{base}/{victim}")
        assert got.status_code == 200, got.text  # not deleted
        st = c.get(f"{base}/{victim}/status").json()
        assert st["status"] == "not_deployed" and not st.get("deployed"), st
        history = c.get(f"{base}/{victim}/deployments").json()
        assert history["deployments"] == [], history
    # and the signed-in dashboard itself still acts: the key is what makes the difference
    dashboard.click("#btn-deploy")
    sync_api.expect(dashboard.locator("#d-status")).not_to_have_text("not_deployed", timeout=60_000)
    context.close()


def test_another_origin_cannot_frame_the_dashboard(server: LiveServer, browser: Any) -> None:
    """frame-ancestors 'none' (and X-Frame-Options): no clickjacking of the dashboard's buttons."""
    html = f"""<!doctype html><html><body>
<iframe id="ui" src="{server.url}/ui" width="800" height="600"></iframe>
</body></html>"""
    with EvilOrigin(html) as evil:
        page = browser.new_page()
        blocked: list[str] = []
        page.on("console", lambda m: blocked.append(m.text) if "frame" in m.text else None)
        page.goto(evil.url)
        page.wait_for_timeout(3000)
        framed = [f for f in page.frames if f != page.main_frame]
        assert framed, page.frames
        # a blocked frame holds Chromium's error page, never the dashboard's sign-in form
        for frame in framed:
            assert frame.url != f"{server.url}/ui" or frame.locator("#key").count() == 0
            assert frame.locator("#signin").count() == 0
        page.close()
