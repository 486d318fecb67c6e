"""The port keeper (issue 14, plughost.server.port_keeper): a SIGKILLed server's port stays open, the
connections made meanwhile wait in the accept queue and the next server on the same home
and port answers them; a deliberate stop closes the port; without a new server the keeper
lets the port go after PLUGHOST_PORT_KEEP_S."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from pathlib import Path

from support import LiveServer


def connect_refused(port: int) -> bool:
    """Whether a TCP connect to the port is refused (nothing holds it)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def wait_refused(port: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if connect_refused(port):
            return True
        time.sleep(0.1)
    return False


def test_after_a_sigkill_the_next_server_answers_the_connections_made_meanwhile(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    first = LiveServer(home=home).start()
    again = LiveServer(home=home, key=first.key, port=first.port)
    answers: list[int | str] = []

    def call_while_down() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", first.port, timeout=60)
        try:
            conn.request("GET", "/healthz")
            answers.append(conn.getresponse().status)
        except OSError as exc:
            answers.append(type(exc).__name__)
        finally:
            conn.close()

    try:
        first.kill()
        assert not connect_refused(first.port)  # the keeper holds the port
        callers = [threading.Thread(target=call_while_down) for _ in range(4)]
        for t in callers:
            t.start()
        time.sleep(0.5)
        assert answers == []  # queued, not refused
        again.start()
        for t in callers:
            t.join(60)
        assert answers == [200] * 4, answers
        assert "took the listening socket" in again.logs()
    finally:
        again.stop()
        first.stop()
    # a plain stop of the last server closes the port
    assert wait_refused(first.port, 5.0)


def test_the_keeper_lets_the_port_go_when_no_server_comes_back(tmp_path: Path) -> None:
    server = LiveServer(home=tmp_path / "home", extra_env={"PLUGHOST_PORT_KEEP_S": "2"})
    server.start()
    server.kill()
    assert not connect_refused(server.port)
    assert wait_refused(server.port, 10.0)


def test_with_the_keeper_off_a_sigkill_closes_the_port(tmp_path: Path) -> None:
    server = LiveServer(home=tmp_path / "home", extra_env={"PLUGHOST_PORT_KEEP_S": "0"})
    server.start()
    server.kill()
    assert connect_refused(server.port)
