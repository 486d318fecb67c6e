"""Container calls from plugin code over the replica socket: the replica's link, its server
and the server side's channel, in process over a real Unix socket."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plughost.backends import client
from plughost.backends.channel import ReplicaChannel
from plughost.replica.container_link import ContainerLink
from plughost.replica.invoke import ServiceInvoker
from plughost.replica.protocol import (
    CONTAINER_PREFIX,
    decode_container_frame,
    encode_container_frame,
)
from plughost.replica.server import ReplicaServer
from plughost.runtime_api import container_transport
from plughost.runtime_api.shared.plugins.container import ContainerError, container


@pytest.fixture
def socket_path() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="phl", dir="/tmp"))
    try:
        yield folder / "s.sock"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        container_transport.install(None)


def handler(inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
    """A plain plugin handler (plugin thread) that runs the container on a loop of its own."""
    loop = asyncio.new_event_loop()
    try:
        return {"value": loop.run_until_complete(container.secrets.get(inputs["name"]))}
    except ContainerError as exc:
        return {"error": exc.type, "message": exc.message}
    finally:
        loop.close()


async def answer(request: Any) -> dict[str, Any]:
    """The server's side: a fixed reply per secret name."""
    return {"ok": True, "result": f"value-of-{request['args']['name']}"}


def run(socket_path: Path, offer: bool, offer_wait_s: float = 10.0) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        link = ContainerLink(offer_wait_s)
        link.attach(asyncio.get_running_loop())
        container_transport.install(link.submit)
        server = ReplicaServer(ServiceInvoker(handler), socket_path, 5, container=link)
        await server.start()
        serving = asyncio.create_task(server.serve_until_stopped())
        loop = asyncio.get_running_loop()
        _, channel = await loop.create_unix_connection(
            lambda: ReplicaChannel(
                lambda *_: TimeoutError(), lambda _: None, answer if offer else None
            ),
            str(socket_path),
        )
        try:
            if offer:
                assert await client.offer_container(channel.request, 5) is True
            body = b'{"inputs": {"name": "api_key"}, "parameters": {}}'
            import orjson

            return dict(orjson.loads(await client.call(channel.request, body, 10)))
        finally:
            channel.close()
            server.request_stop()
            await asyncio.wait_for(serving, 10)

    return asyncio.run(go())


def test_a_plain_handler_gets_the_servers_answer_on_a_loop_of_its_own(socket_path: Path) -> None:
    assert run(socket_path, offer=True) == {"value": "value-of-api_key"}


def test_without_an_offering_server_a_call_gives_up_with_a_clear_error(socket_path: Path) -> None:
    answer = run(socket_path, offer=False, offer_wait_s=0.2)
    assert answer["error"] == "ContainerUnavailable"
    assert "no server connection offered container calls" in answer["message"]


class Outlet:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, body: bytes) -> None:
        self.sent.append(body)


def test_calls_wait_for_an_offer_and_fail_when_their_connection_closes() -> None:
    async def go() -> tuple[Any, Any]:
        link = ContainerLink()
        link.attach(asyncio.get_running_loop())
        parked = link.submit({"target": "secrets.list", "args": {}})
        await asyncio.sleep(0)  # the hand-over to the loop
        outlet = Outlet()
        link.offered(outlet)  # the parked request goes out now
        assert outlet.sent and outlet.sent[0].startswith(CONTAINER_PREFIX)
        cid, request = decode_container_frame(outlet.sent[0], "request")
        assert request == {"target": "secrets.list", "args": {}}
        link.deliver(outlet, encode_container_frame(cid, "reply", {"ok": True, "result": ["a"]}))
        second = link.submit({"target": "secrets.list", "args": {}})
        await asyncio.sleep(0)
        link.closed(outlet)
        return parked.result(1), second.result(1)

    first, second = asyncio.run(go())
    assert first == {"ok": True, "result": ["a"]}
    assert second["error"]["type"] == "ContainerUnavailable"
    assert "closed" in second["error"]["message"]


def test_calls_before_the_replica_serves_are_refused_at_once() -> None:
    reply = ContainerLink().submit({"target": "secrets.list"}).result(1)
    assert reply["ok"] is False and "while its service is constructed" in reply["error"]["message"]


def test_load_reports_made_while_constructing_go_out_once_a_server_offers() -> None:
    report = {"target": "models.load_report",
              "args": {"model": "m_1", "outcome": "ok", "seconds": 0.1}}

    async def go() -> tuple[list[Any], bool]:
        link = ContainerLink()
        link.submit(report)  # the service's constructor, before the replica serves
        link.attach(asyncio.get_running_loop())
        await asyncio.sleep(0)
        outlet = Outlet()
        link.offered(outlet)
        return [decode_container_frame(b, "request")[1] for b in outlet.sent], link.used

    sent, used = asyncio.run(go())
    assert sent == [report]
    assert used is False  # a report does not change how handlers are run
