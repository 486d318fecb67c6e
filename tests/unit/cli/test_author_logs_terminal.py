"""`plughost logs` and the author CLI's text for people never print terminal control raw,
whatever the server sends; a followed stream the server ends is opened again from the last
line printed (plughost.cli.author.commands_observe, plughost.cli.author.output)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pytest
import typer

from plughost.cli.author import commands_observe, follow
from plughost.cli.author.client import AuthorClient, Target
from plughost.cli.author.errors import CliError
from plughost.cli.author.output import fail, say

HOSTILE = "a\x1b[2J\x1b[Hb\x1b]0;pwned title\x07c\r\x08\x7f\x9b31m\u202eevil\ttab"
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _line(time: str, text: str) -> dict[str, Any]:
    return {
        "time": time,
        "release_id": 1,
        "replica": "r1-2\x1b[31m",
        "stream": "stdout",
        "line": text,
    }


def test_lines_sent_raw_are_printed_stripped(capsys: pytest.CaptureFixture[str]) -> None:
    commands_observe._print_lines([_line("2026-01-01T00:00:00.000001Z", HOSTILE)], False)
    out = capsys.readouterr().out
    assert not RAW_CONTROL.search(out), repr(out)
    assert "pwned" not in out and "abcevil" in out  # sequences removed whole
    commands_observe._print_lines([_line("t", HOSTILE)], True)  # --json: JSON escapes them
    assert not RAW_CONTROL.search(capsys.readouterr().out)


def test_messages_for_people_are_stripped(capsys: pytest.CaptureFixture[str]) -> None:
    say(f"deployed: {HOSTILE}")
    with pytest.raises(typer.Exit):
        fail(CliError(f"plugin error {HOSTILE}", details=[f"last line {HOSTILE}"]), False)
    captured = capsys.readouterr()
    assert not RAW_CONTROL.search(captured.out + captured.err)
    assert "evil" in captured.out and "last line" in captured.err


def test_a_stream_the_server_ends_is_followed_again_from_the_last_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(commands_observe, "FOLLOW_POLL_S", 0)
    asked: list[dict[str, str]] = []
    bodies = [
        [_line("2026-01-01T00:00:01.000000Z", "first")],
        [_line("2026-01-01T00:00:02.000000Z", "second")],
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        if not bodies:
            return httpx.Response(
                401,
                json={
                    "success": False,
                    "error": {"message": "stop here", "type": "AuthenticationError"},
                },
            )
        events = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in bodies.pop(0))
        # each stream ends the way the lifetime bound ends one
        events += b": end of stream: lifetime reached, reconnect\n\n"
        return httpx.Response(200, content=events, headers={"content-type": "text/event-stream"})

    client = AuthorClient(Target("http://h:1", "k", "ns"), transport=httpx.MockTransport(handler))
    with pytest.raises(CliError, match="stop here"):
        commands_observe._follow(client, "p1", None, 200, False)
    out = capsys.readouterr().out
    assert out.index("first") < out.index("second")
    assert "since" not in asked[0]
    assert asked[1]["since"] == "2026-01-01T00:00:01.000000Z"
    assert asked[2]["since"] == "2026-01-01T00:00:02.000000Z"


def test_a_status_watch_the_server_ends_is_opened_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "POLL_S", 0)
    watches = [["in_progress"], ["in_progress", "deployed"]]
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.query.decode())
        if "watch" not in request.url.params:
            return httpx.Response(200, json={"status": "in_progress", "plugin_id": "p1"})
        events = b"".join(
            b"data: " + orjson.dumps({"status": s, "plugin_id": "p1"}) + b"\n\n"
            for s in watches.pop(0)
        )
        return httpx.Response(
            200,
            content=events + b": end of stream: lifetime reached, reconnect\n\n",
            headers={"content-type": "text/event-stream"},
        )

    client = AuthorClient(Target("http://h:1", "k", "ns"), transport=httpx.MockTransport(handler))
    seen: list[str] = []
    final = follow.follow_status(client, "p1", lambda s: seen.append(s["status"]), 5)
    assert final["status"] == "deployed"
    assert [q for q in asked if "watch" in q] == ["watch=true", "watch=true"]  # not polling
