"""Option resolution of the author's CLI (flag > environment > default; the key from the
local admin-key file), exit codes and JSON output, against a small recording HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from plughost.cli.main import app

CLEAN_ENV: dict[str, str | None] = {
    "PLUGHOST_URL": None,
    "PLUGHOST_API_KEY": None,
    "PLUGHOST_NAMESPACE": None,
}
PLUGIN = {"plugin_id": "emb_1_0_0", "name": "emb", "version": "1.0.0", "deployed": True}


class Recorder(BaseHTTPRequestHandler):
    """Answers a plugin list, plain statuses, and a 404 in the contract's shape."""

    seen: ClassVar[list[dict[str, Any]]] = []
    statuses: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
        if self.path.endswith("/plugins"):
            self._send(200, {"success": True, "plugins": [PLUGIN], "total": 1})
        elif "/status" in self.path:
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            self._send(200, {"plugin_id": "emb_1_0_0", "status": status, "error": "it broke"})
        else:
            error = {"message": "no such thing", "type": "NotFoundError", "details": None}
            self._send(404, {"success": False, "status": 404, "error": error})

    def _send(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.seen = []
    Recorder.statuses = ["deployed"]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def run(*args: str, **env: str | None) -> Any:
    return CliRunner().invoke(app, list(args), env={**CLEAN_ENV, **env})


def test_environment_sets_url_key_and_namespace(server: str) -> None:
    result = run(
        "list", "--json", PLUGHOST_URL=server, PLUGHOST_API_KEY="k_env", PLUGHOST_NAMESPACE="ns_env"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [PLUGIN]
    assert Recorder.seen[-1] == {"path": "/v1/namespaces/ns_env/plugins", "auth": "Bearer k_env"}


def test_flags_win_over_the_environment(server: str) -> None:
    result = run(
        "list",
        "--url",
        server,
        "--api-key",
        "k_flag",
        "-n",
        "ns_flag",
        PLUGHOST_URL="http://127.0.0.1:9",
        PLUGHOST_API_KEY="k_env",
        PLUGHOST_NAMESPACE="ns_env",
    )
    assert result.exit_code == 0, result.output
    assert Recorder.seen[-1] == {"path": "/v1/namespaces/ns_flag/plugins", "auth": "Bearer k_flag"}


def test_key_defaults_to_the_admin_key_file_and_namespace_to_ns_default(
    server: str, tmp_path: Path
) -> None:
    (tmp_path / "admin-key").write_text("k_file\n")
    result = run("list", "--url", server, PLUGHOST_HOME=str(tmp_path))
    assert result.exit_code == 0, result.output
    assert Recorder.seen[-1] == {
        "path": "/v1/namespaces/ns_default/plugins",
        "auth": "Bearer k_file",
    }


def test_no_key_anywhere_says_how_to_give_one(server: str, tmp_path: Path) -> None:
    result = run("list", "--url", server, PLUGHOST_HOME=str(tmp_path))
    assert result.exit_code == 1
    assert "no API key: pass --api-key, set PLUGHOST_API_KEY" in result.stderr
    assert str(tmp_path / "admin-key") in result.stderr


def test_default_url_is_the_local_server(tmp_path: Path) -> None:
    result = run("list", "--api-key", "k", PLUGHOST_HOME=str(tmp_path))
    assert "127.0.0.1:8080" in result.stderr or result.exit_code == 0


def test_a_name_resolves_and_the_server_error_is_reported(server: str) -> None:
    result = run("history", "emb", "--url", server, "--api-key", "k")
    assert result.exit_code == 1
    assert "NotFoundError: no such thing" in result.stderr
    assert Recorder.seen[-1]["path"].startswith("/v1/namespaces/ns_default/plugins/emb_1_0_0/")


def test_json_failure_prints_the_server_body(server: str) -> None:
    result = run("logs", "emb_1_0_0", "--json", "--url", server, "--api-key", "k")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["type"] == "NotFoundError"


def test_unknown_plugin_fails_naming_it(server: str) -> None:
    result = run("status", "missing", "--url", server, "--api-key", "k")
    assert result.exit_code == 1
    assert "'missing'" in result.stderr


def test_watch_falls_back_to_polling_and_fails_on_a_failed_rollout(server: str) -> None:
    Recorder.statuses = ["queued", "in_progress", "failed"]
    result = run("status", "emb", "--watch", "--json", "--url", server, "--api-key", "k")
    assert result.exit_code == 1
    assert json.loads(result.stdout.splitlines()[0])["status"] == "failed"
    assert "it broke" in result.stderr
    assert sum("/status" in s["path"] for s in Recorder.seen) >= 3


def test_unreachable_server_names_the_url(tmp_path: Path) -> None:
    result = run("list", "--url", "http://127.0.0.1:9", "--api-key", "k")
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:9" in result.stderr
