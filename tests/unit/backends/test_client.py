"""The replica client (plughost.backends.client): the hello proves both secrets, a call's
result comes back as the replica's own bytes, and a reply's error becomes the right one of
the client's errors (a worker's refusal, a plugin failure, an unreadable reply)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from plughost.backends import client
from plughost.backends.client import BodyFor
from plughost.backends.errors import (
    ReplicaCallError,
    ReplicaRequestRefused,
    ReplicaUnavailable,
)
from plughost.errors import CallFailed, RequestRefused, Unavailable
from plughost.replica import auth
from plughost.replica.protocol import (
    WORKER_ORIGIN,
    ReplyHead,
    encode_error_reply,
    encode_ok_reply,
    split_reply,
)

SECRET = auth.new_secret()


class FakeReplica:
    """A ``send`` that records each request and answers with ``answer(request)``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[tuple[dict[str, Any], float, bool]] = []

    async def send(
        self, body_for: BodyFor, timeout_s: float, is_call: bool
    ) -> tuple[ReplyHead, bytes]:
        request = orjson.loads(body_for(5))
        self.sent.append((request, timeout_s, is_call))
        reply = self.answer(request)
        return split_reply(reply), reply


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_hello_sends_a_token_and_checks_the_replicas_proof() -> None:
    def answer(request: dict[str, Any]) -> bytes:
        assert auth.token_ok(SECRET, request["nonce"], request["token"])
        proof = auth.replica_proof(SECRET, request["nonce"])
        return encode_ok_reply(request["id"], orjson.dumps({"proof": proof}))

    fake = FakeReplica(answer)
    assert run(client.hello(fake.send, SECRET, 3.0)) is True
    request, timeout_s, is_call = fake.sent[0]
    assert (request["op"], request["id"], timeout_s, is_call) == ("hello", 5, 3.0, False)


def test_hello_from_a_replica_without_the_secret_is_refused() -> None:
    def answer(request: dict[str, Any]) -> bytes:
        proof = auth.replica_proof(auth.new_secret(), request["nonce"])
        return encode_ok_reply(request["id"], orjson.dumps({"proof": proof}))

    assert run(client.hello(FakeReplica(answer).send, SECRET, 3.0)) is False


def test_a_refused_hello_is_false_not_an_error() -> None:
    fake = FakeReplica(lambda r: encode_error_reply(r["id"], "ProtocolError", "hello refused"))
    assert run(client.hello(fake.send, SECRET, 3.0)) is False


def test_a_call_returns_the_replicas_result_bytes_untouched() -> None:
    fake = FakeReplica(lambda r: encode_ok_reply(r["id"], b'{"x": 1.50}'))
    assert run(client.call(fake.send, b'{"inputs":{},"parameters":{}}', 9.0)) == b'{"x": 1.50}'
    request, timeout_s, is_call = fake.sent[0]
    assert request == {"id": 5, "op": "call", "body": {"inputs": {}, "parameters": {}}}
    assert (timeout_s, is_call) == (9.0, True)


def test_a_reply_laid_out_otherwise_is_decoded() -> None:
    fake = FakeReplica(lambda r: orjson.dumps({"ok": True, "id": r["id"], "result": [1, 2]}))
    assert run(client.call(fake.send, b"{}", 1.0)) == b"[1,2]"


def test_a_plugin_failure_is_a_call_error_with_its_type() -> None:
    fake = FakeReplica(lambda r: encode_error_reply(r["id"], "KeyError", "'text'"))
    with pytest.raises(ReplicaCallError) as caught:
        run(client.call(fake.send, b"{}", 1.0))
    assert isinstance(caught.value, CallFailed)
    assert (caught.value.type_name, caught.value.message) == ("KeyError", "'text'")


def test_a_workers_refusal_is_a_refused_request() -> None:
    reply = encode_error_reply(1, "ValidationError", "inputs must be an object", WORKER_ORIGIN)
    with pytest.raises(ReplicaRequestRefused, match="inputs must be an object") as caught:
        client.result_or_raise(reply)
    assert isinstance(caught.value, RequestRefused)


def test_a_refusal_can_be_reported_as_a_failure() -> None:
    reply = encode_error_reply(1, "ValidationError", "inputs must be an object", WORKER_ORIGIN)
    with pytest.raises(ReplicaCallError) as caught:
        client.result_or_raise(reply, refusal_is_failure=True)
    assert caught.value.type_name == "ValidationError"


def test_an_error_without_details_still_raises() -> None:
    with pytest.raises(ReplicaCallError, match="Error: "):
        client.result_or_raise(b'{"id":1,"ok":false,"error":"boom"}')


@pytest.mark.parametrize("body", [b"", b"not json", b"[1]"])
def test_an_unreadable_reply_makes_the_replica_unavailable(body: bytes) -> None:
    with pytest.raises(ReplicaUnavailable, match="unreadable reply") as caught:
        client.result_or_raise(body)
    assert isinstance(caught.value, Unavailable)


def test_ping_is_healthy_only_on_a_true_verdict() -> None:
    healthy = FakeReplica(lambda r: encode_ok_reply(r["id"], b"true"))
    sick = FakeReplica(lambda r: encode_ok_reply(r["id"], b"false"))
    failed = FakeReplica(lambda r: encode_error_reply(r["id"], "RuntimeError", "x"))
    assert run(client.ping(healthy.send, 1.0)) is True
    assert run(client.ping(sick.send, 1.0)) is False
    assert run(client.ping(failed.send, 1.0)) is False
    assert healthy.sent[0][0]["op"] == "health"


@pytest.mark.parametrize("payload", [b"[]", b"nope", b'"text"'])
def test_a_body_that_is_not_one_json_object_is_refused(payload: bytes) -> None:
    with pytest.raises(ReplicaRequestRefused, match="request body"):
        client.require_json_object(payload)
    client.require_json_object(b'{"inputs": {}}')
