"""`plughost infer` against a small local HTTP server that streams its answer: NDJSON lines
or server-sent events are printed one JSON per line as they arrive, an error line mid-stream
goes to stderr with exit code 1, and a plain JSON answer prints as before."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from plughost.cli.main import app

PLUGHOST = str(Path(sys.executable).parent / "plughost")
PLUGIN = {"plugin_id": "gen_1_0_0", "name": "gen", "version": "1.0.0", "deployed": True}
ITEMS = [{"token": "a", "i": 0}, {"token": "b", "i": 1}, {"token": "c", "i": 2}]
ERROR = {
    "success": False,
    "status": 504,
    "error": {"message": "past 2s", "type": "GatewayTimeoutError", "details": None},
}


class Streamer(BaseHTTPRequestHandler):
    """Lists one plugin; answers its calls as ``mode`` says. Before the last item of a
    stream it waits for ``release`` (set: at once)."""

    mode: ClassVar[str] = "ndjson"
    release: ClassVar[threading.Event] = threading.Event()
    sent: ClassVar[list[int]] = []
    bodies: ClassVar[list[Any]] = []

    def do_GET(self) -> None:
        raw = json.dumps({"success": True, "plugins": [PLUGIN], "total": 1}).encode()
        self._head(200, "application/json", len(raw))
        self.wfile.write(raw)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.bodies.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
        if self.mode == "json":
            raw = json.dumps({"answer": 42}).encode()
            self._head(200, "application/json", len(raw))
            self.wfile.write(raw)
            return
        events = self.mode.endswith("sse")
        self._head(200, "text/event-stream" if events else "application/x-ndjson; charset=utf-8")
        for n, item in enumerate(ITEMS):
            if n == len(ITEMS) - 1:
                self.release.wait(20)
                if self.mode.startswith("error"):
                    self._chunk(ERROR, events, "error")
                    return
            self._chunk(item, events)
            self.sent.append(n)
            time.sleep(0.02)
        if events:
            self.wfile.write(b"event: end\ndata: {}\n\n")

    def _chunk(self, value: Any, events: bool, name: str = "") -> None:
        line = json.dumps(value).encode()
        if events:
            self.wfile.write((f"event: {name}\n" if name else "").encode() + b"data: " + line
                             + b"\n\n")
        else:
            self.wfile.write(line + b"\n")
        self.wfile.flush()

    def _head(self, code: int, media: str, length: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", media)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    Streamer.mode = "ndjson"
    Streamer.release = threading.Event()
    Streamer.release.set()
    Streamer.sent = []
    Streamer.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Streamer)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        Streamer.release.set()
        httpd.shutdown()
        httpd.server_close()


def infer(url: str, *extra: str) -> Any:
    args = ["infer", "gen", "--input", '{"text": "hi"}', "--url", url, "--api-key", "k", *extra]
    return CliRunner().invoke(app, args, env={"PLUGHOST_NAMESPACE": None})


@pytest.mark.parametrize("mode", ["ndjson", "sse"])
def test_a_streamed_answer_prints_one_json_line_per_item(server: str, mode: str) -> None:
    Streamer.mode = mode
    result = infer(server, "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == ITEMS
    assert Streamer.bodies == [
        {"path": "/inference/ns_default/custom_plugin_gen_1_0_0",
         "body": {"inputs": {"text": "hi"}, "parameters": {}}},
    ]


def test_for_people_the_items_are_followed_by_a_summary(server: str) -> None:
    result = infer(server)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [json.loads(line) for line in lines[:3]] == ITEMS
    assert "gen_1_0_0 streamed 3 items in" in lines[3]


@pytest.mark.parametrize("mode", ["error", "error-sse"])
@pytest.mark.parametrize("as_json", [True, False])
def test_an_error_mid_stream_goes_to_stderr_and_fails_the_command(
    server: str, mode: str, as_json: bool
) -> None:
    Streamer.mode = mode
    result = infer(server, *(["--json"] if as_json else []))
    assert result.exit_code == 1
    stdout = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert stdout == ITEMS[:2], "the items before the error are printed, the error is not"
    assert json.dumps(ERROR) in result.stderr
    if not as_json:
        assert "GatewayTimeoutError: past 2s" in result.stderr


def test_a_plain_answer_prints_as_before(server: str) -> None:
    Streamer.mode = "json"
    result = infer(server, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"answer": 42}
    human = infer(server)
    assert "gen_1_0_0 answered in" in human.stdout and '{"answer": 42}' in human.stdout


def _read_line(stream: Any, timeout_s: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout_s)
    assert ready, f"no line within {timeout_s}s"
    return str(stream.readline())


def test_the_first_item_is_printed_before_the_last_is_sent(server: str) -> None:
    """The real command in its own process: the server holds the last item back until the
    test has read the first from the command's stdout."""
    Streamer.release.clear()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
    command = subprocess.Popen(
        [PLUGHOST, "infer", "gen", "--input", "{}", "--url", server, "--api-key", "k", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = _read_line(command.stdout, 30)
        assert json.loads(first) == ITEMS[0]
        assert Streamer.sent[-1] < len(ITEMS) - 1, "the last item was not sent yet"
        Streamer.release.set()
        out, err = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    assert command.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == ITEMS[1:]
