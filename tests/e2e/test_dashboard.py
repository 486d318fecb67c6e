"""The /ui dashboard in a real browser: Debian's headless Chromium driven by Playwright.

Signs in with an API key, deploys a plugin from the page and watches its status reach
`deployed` without a reload, deploys a second version, rolls the alias back, and saves
screenshots (desktop and phone width) under tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_support import NS, infer, plugin_archive, upload
from model_support import model_tar, safetensors_bytes
from support import REPO, LiveServer, unique_name

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (make browser-deps)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(home=tmp_path_factory.mktemp("dashboard"))
    try:
        srv.start(timeout=180)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def sign_in(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.url}/ui")
    page.fill("#key", server.key)
    page.click("#signin")
    page.wait_for_selector("#app:not([hidden])")


def test_dashboard_deploys_watches_live_and_rolls_back(server: LiveServer, browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = unique_name("dash")
    with server.client() as c:
        v1 = upload(c, name, plugin_archive(name, "1.0.0", tag="v1", start_delay=0.5), "1.0.0")
        v2 = upload(c, name, plugin_archive(name, "2.0.0", tag="v2", start_delay=0.5), "2.0.0")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, server)
    expect = sync_api.expect

    # deploy v1 from the page; the status reaches deployed with no reload
    page.click(f"tr[data-plugin-id='{v1}']")
    expect(page.locator("#d-title")).to_have_text(f"{name} 1.0.0")
    page.evaluate("window.__sameDocument = true")
    page.click("#btn-deploy")
    expect(page.locator("#d-status")).to_have_text("deployed", timeout=60_000)
    assert page.evaluate("window.__sameDocument") is True  # no navigation happened
    expect(page.locator("#d-replicas")).to_contain_text("1/1 ready", timeout=15_000)
    expect(page.locator("#timeline")).to_contain_text("in_progress -> deployed", timeout=15_000)

    # then v2, which takes the alias
    page.click(f"tr[data-plugin-id='{v2}']")
    page.click("#btn-deploy")
    expect(page.locator("#d-status")).to_have_text("deployed", timeout=60_000)
    expect(page.locator("#d-alias")).to_contain_text("-> 2.0.0", timeout=15_000)
    with server.client() as c:
        for i in range(20):
            assert infer(c, f"/inference/{NS}/{name}", {"text": str(i)}).status_code == 200
    expect(page.locator("#d-requests")).to_contain_text("20 total", timeout=15_000)

    # roll the alias back to 1.0.0 from the page
    expect(page.locator("#rollback-version option[value='1.0.0']")).to_have_count(1, timeout=15_000)
    page.select_option("#rollback-version", "1.0.0")
    page.click("#btn-rollback")
    expect(page.locator("#d-alias")).to_contain_text("-> 1.0.0", timeout=15_000)
    expect(page.locator("#timeline")).to_contain_text("(rollback)", timeout=15_000)
    with httpx.Client(base_url=server.url, headers=server.auth) as c:
        answer = infer(c, f"/inference/{NS}/{name}", {"text": "after"}).json()
    assert answer["tag"] == "v1"
    assert page.evaluate("window.__sameDocument") is True
    page.wait_for_timeout(5500)  # one more sample for the chart
    page.screenshot(path=str(ARTIFACTS / "dashboard-desktop.png"), full_page=True)

    # phone width: the same page, no horizontal scrolling
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    sign_in(phone, server)
    phone.click(f"tr[data-plugin-id='{v2}']")
    expect(phone.locator("#d-status")).to_have_text("deployed", timeout=15_000)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    assert errors == []


def test_dashboard_lists_the_namespaces_models(server: LiveServer, browser: Any) -> None:
    name = unique_name("dashw")
    model_id = f"{name}_1_0_0"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, server)
    expect = sync_api.expect
    row = page.locator(f"tr[data-model-id='{model_id}']")
    expect(row).to_have_count(0)
    with server.client() as c:
        resp = c.post(
            f"/v1/namespaces/{NS}/models",
            data={"name": name, "version": "1.0.0", "model_format": "safetensors",
                  "task_type": "embedding"},
            files={"file": ("w.tar.gz", model_tar({"model.safetensors": safetensors_bytes()}),
                            "application/gzip")},
        )
        assert resp.status_code == 200, resp.text
        # the list refreshes itself (every 5 s): the new model appears without a reload
        expect(row).to_contain_text("safetensors", timeout=15_000)
        expect(row.locator("td").nth(2)).to_have_text("embedding")
        expect(row.locator("td").nth(3)).to_have_text("no")
        assert c.post(f"/v1/namespaces/{NS}/models/{model_id}/deploy").status_code == 200
        expect(row.locator("td").nth(3)).to_have_text("yes", timeout=15_000)
        assert c.delete(f"/v1/namespaces/{NS}/models/{model_id}").status_code == 200
    expect(row).to_have_count(0, timeout=15_000)
    assert errors == []


def test_dashboard_refuses_a_wrong_key(server: LiveServer, browser: Any) -> None:
    page = browser.new_page()
    page.goto(f"{server.url}/ui")
    page.fill("#key", "ph_wrong")
    page.click("#signin")
    sync_api.expect(page.locator("#signin-error")).to_contain_text("refused")
    assert page.evaluate("sessionStorage.getItem('plughost.key')") is None


def test_dashboard_static_files_are_served_and_nothing_else(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/ui").status_code == 200
        assert c.get("/ui/static/dashboard.js").headers["content-type"].startswith("text/javascript")
        assert c.get("/ui/static/..%2F__init__.py").status_code == 404
        assert c.get("/ui/static/missing.js").json()["error"]["type"] == "NotFoundError"
