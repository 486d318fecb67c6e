"""The capped ASGI body read: whole bodies, the limit to the byte, hostile senders."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from plughost.dataplane.body import MAX_BODY_BYTES, ClientDisconnected, read_capped
from plughost.errors import BadRequestError, PayloadTooLargeError, wire_error


class Receiver:
    """An ASGI ``receive`` playing the given messages, counting how many were read."""

    def __init__(self, messages: Iterable[dict[str, Any]]) -> None:
        self.messages = iter(messages)
        self.read = 0

    async def __call__(self) -> dict[str, Any]:
        self.read += 1
        return next(self.messages)


def chunks(*parts: bytes) -> list[dict[str, Any]]:
    """``http.request`` messages carrying ``parts``, the last one ending the body."""
    return [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]


def read(receive: Receiver, limit: int = MAX_BODY_BYTES) -> bytes:
    return asyncio.run(read_capped(receive, limit))


def test_one_message_body_is_returned_whole() -> None:
    assert read(Receiver(chunks(b'{"inputs": {}}'))) == b'{"inputs": {}}'


def test_chunked_body_is_joined_in_order() -> None:
    assert read(Receiver(chunks(b"ab", b"", b"cd", b"e"))) == b"abcde"


def test_empty_body_and_a_message_without_body_key_read_as_empty() -> None:
    assert read(Receiver(chunks(b""))) == b""
    assert read(Receiver([{"type": "http.request"}])) == b""


def test_a_body_of_exactly_the_limit_is_accepted() -> None:
    assert read(Receiver(chunks(b"x" * 6, b"y" * 4)), limit=10) == b"x" * 6 + b"y" * 4


def test_one_byte_over_the_limit_is_refused_with_413() -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        read(Receiver(chunks(b"x" * 6, b"y" * 5)), limit=10)
    status, body = wire_error(caught.value)
    assert status == 413
    assert body["error"] == {
        "message": "request body exceeds 10 bytes",
        "type": "PayloadTooLargeError",
        "details": None,
    }


def test_an_endless_sender_is_cut_off_at_the_limit_not_read_to_the_end() -> None:
    def endless() -> Iterable[dict[str, Any]]:
        while True:
            yield {"type": "http.request", "body": b"z" * 1024, "more_body": True}

    receive = Receiver(endless())
    with pytest.raises(PayloadTooLargeError):
        read(receive, limit=10 * 1024)
    assert receive.read == 11  # the chunk that crossed the limit is the last one read


def test_one_huge_chunk_is_refused_at_once() -> None:
    receive = Receiver(chunks(b"h" * (MAX_BODY_BYTES + 1), b"never read"))
    with pytest.raises(PayloadTooLargeError):
        read(receive)
    assert receive.read == 1


def test_a_client_leaving_mid_body_is_a_bad_request() -> None:
    receive = Receiver([*chunks(b"part", b"more")[:1], {"type": "http.disconnect"}])
    with pytest.raises(ClientDisconnected) as caught:
        read(receive)
    assert isinstance(caught.value, BadRequestError)
    status, body = wire_error(caught.value)
    assert (status, body["error"]["message"]) == (400, "client disconnected")


def test_the_limit_is_64_mib() -> None:
    assert MAX_BODY_BYTES == 64 * 1024 * 1024
