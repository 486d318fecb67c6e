"""The takeover handshake (plughost.server.handover) between a running server's ControlServer and a
new process, with the server's side as recorded callbacks: who asks gets the listening
socket once the old server paused; a new process that goes away makes the old one resume;
one that says `serving` makes it finish."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from plughost.config import Settings
from plughost.server.handover import ControlServer, Handoff, ask, ask_predecessor


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def pause(self, pid: int) -> None:
        self.calls.append(f"pause {pid}")

    async def resume(self) -> None:
        self.calls.append("resume")

    def finish(self) -> None:
        self.calls.append("finish")

    def restart(self) -> int:
        self.calls.append("restart")
        return 4242


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", port=18080)


async def _until(check: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_nobody_to_take_over_from(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert ask_predecessor(settings) is None
    with pytest.raises(ConnectionError):
        ask(settings, {"op": "hello"})


def test_a_takeover_hands_the_listener_over_then_the_old_server_finishes(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    rec = Recorder()

    async def scenario() -> Handoff:
        control = ControlServer(settings, listener, rec.pause, rec.resume, rec.finish,
                                rec.restart)
        await control.start()
        hello = await asyncio.to_thread(ask, settings, {"op": "hello"})
        assert hello == {"pid": os.getpid(), "port": 18080, "state": "serving"}
        handoff = await asyncio.to_thread(ask_predecessor, settings)
        assert handoff is not None
        assert rec.calls == [f"pause {os.getpid()}"]
        assert control.state == "handing_over"
        # the very socket: same address, and it accepts
        assert handoff.listener.getsockname() == listener.getsockname()
        assert not handoff.listener.get_inheritable()  # replicas must not hold the port
        handoff.serving()
        await _until(lambda: "finish" in rec.calls)
        assert control.state == "draining"
        control.close()
        return handoff

    handoff = asyncio.run(scenario())
    handoff.listener.close()
    listener.close()
    assert rec.calls == [f"pause {os.getpid()}", "finish"]


def test_a_new_server_that_goes_away_leaves_the_old_one_serving(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    rec = Recorder()

    async def scenario() -> None:
        control = ControlServer(settings, listener, rec.pause, rec.resume, rec.finish,
                                rec.restart)
        await control.start()
        handoff = await asyncio.to_thread(ask_predecessor, settings)
        assert handoff is not None
        handoff.abandon()  # the new process died during its start
        handoff.listener.close()
        await _until(lambda: control.state == "serving" and "resume" in rec.calls)
        # it answers again, and a later takeover is possible
        hello = await asyncio.to_thread(ask, settings, {"op": "hello"})
        assert hello["state"] == "serving"
        restarted = await asyncio.to_thread(ask, settings, {"op": "restart"})
        assert restarted == {"ok": True, "pid": os.getpid(), "successor": 4242}
        control.close()

    asyncio.run(scenario())
    listener.close()
    assert rec.calls == [f"pause {os.getpid()}", "resume", "restart"]


def test_a_server_on_another_database_is_not_taken_over(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    other = Settings(home=tmp_path / "home", port=18080, database_url="sqlite:///elsewhere.db")
    listener = socket.socket()
    rec = Recorder()

    async def scenario() -> None:
        control = ControlServer(settings, listener, rec.pause, rec.resume, rec.finish,
                                rec.restart)
        await control.start()
        with pytest.raises(RuntimeError, match="another database"):
            await asyncio.to_thread(ask_predecessor, other)
        assert control.state == "serving"
        control.close()

    asyncio.run(scenario())
    listener.close()
    assert rec.calls == []


def test_the_control_socket_is_per_home_and_port(tmp_path: Path) -> None:
    from plughost.server.handover import control_address

    a = control_address(Settings(home=tmp_path / "a", port=1))
    assert a != control_address(Settings(home=tmp_path / "b", port=1))
    assert a != control_address(Settings(home=tmp_path / "a", port=2))
    assert a.startswith("\0")


def test_restart_without_a_running_server_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from plughost.cli.main import app

    monkeypatch.setenv("PLUGHOST_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["restart", "--port", "18083", "--timeout", "1"])
    assert result.exit_code == 1
    assert "no plughost server runs on this home and port" in result.output
