"""Framing and reply encoding shared by the replica and its client."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from plughost.replica.protocol import (
    END,
    ITEM,
    MAX_FRAME_BYTES,
    RESULT,
    FrameBuffer,
    FrameError,
    ResultEncodingError,
    decode_object,
    encode_cancel_request,
    encode_end_reply,
    encode_error_reply,
    encode_frame,
    encode_item_reply,
    encode_ok_reply,
    encode_raw_call_request,
    encode_request,
    encode_result,
    error_running,
    read_frame,
    recover_request_id,
    split_reply,
)


def read_all_frames(data: bytes) -> list[bytes | None]:
    """Feed ``data`` (then EOF) to a StreamReader and read frames until None or an error."""

    async def go() -> list[bytes | None]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        frames: list[bytes | None] = []
        while True:
            frame = await read_frame(reader)
            frames.append(frame)
            if frame is None:
                return frames

    return asyncio.run(go())


def test_frames_round_trip_including_empty_and_binary_bodies() -> None:
    bodies = [b'{"id":1}', b"", bytes(range(256)) * 3]
    stream = b"".join(encode_frame(body) for body in bodies)
    assert read_all_frames(stream) == [*bodies, None]


def test_frame_header_is_four_byte_big_endian_length() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"


def test_stream_ending_inside_a_frame_is_an_error() -> None:
    with pytest.raises(FrameError, match="2 of 10 bytes"):
        read_all_frames(struct.pack(">I", 10) + b"ab")
    with pytest.raises(FrameError, match="header"):
        read_all_frames(b"\x00\x00")


def test_oversized_length_is_rejected_before_reading_the_body() -> None:
    with pytest.raises(FrameError, match="exceeds"):
        read_all_frames(struct.pack(">I", MAX_FRAME_BYTES + 1))


def test_decode_object_accepts_only_json_objects() -> None:
    assert decode_object(b'{"a": 1}') == {"a": 1}
    with pytest.raises(FrameError, match="not valid JSON"):
        decode_object(b"{nope")
    with pytest.raises(FrameError, match="JSON list"):
        decode_object(b"[1, 2]")


class Point(BaseModel):
    x: int
    y: float


class ArrayLike:
    def tolist(self) -> list[int]:
        return [1, 2, 3]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"t": (1, 2)}, {"t": [1, 2]}),
        ({"s": {7}}, {"s": [7]}),
        ({"p": Point(x=1, y=2.5)}, {"p": {"x": 1, "y": 2.5}}),
        ({"a": ArrayLike()}, {"a": [1, 2, 3]}),
        ({1: "int key"}, {"1": "int key"}),
        (None, None),
    ],
)
def test_results_orjson_cannot_encode_natively_are_converted(value: Any, expected: Any) -> None:
    assert orjson.loads(encode_result(value)) == expected


def test_numpy_arrays_and_scalars_are_encoded() -> None:
    np = pytest.importorskip("numpy")
    encoded = encode_result({"v": np.arange(3, dtype=np.float32), "s": np.int64(4)})
    assert orjson.loads(encoded) == {"v": [0.0, 1.0, 2.0], "s": 4}


@pytest.mark.parametrize("value", [object(), {"b": b"bytes"}, {"f": lambda: None}])
def test_unencodable_results_raise_result_encoding_error(value: Any) -> None:
    with pytest.raises(ResultEncodingError, match="not JSON serializable"):
        encode_result(value)


def test_ok_reply_exposes_the_result_bytes_without_decoding() -> None:
    result = encode_result({"embedding": [0.5, -1.0], "nested": {"k": "}"}})
    body = encode_ok_reply(42, result)
    head = split_reply(body)
    assert (head.request_id, head.ok) == (42, True)
    assert body[head.result_start : -1] == result
    assert orjson.loads(body) == {"id": 42, "ok": True, "result": orjson.loads(result)}


def test_error_reply_round_trips() -> None:
    body = encode_error_reply(7, "ValueError", 'bad "text"')
    head = split_reply(body)
    assert (head.request_id, head.ok, head.result_start) == (7, False, -1)
    assert orjson.loads(body)["error"] == {"type": "ValueError", "message": 'bad "text"'}


def test_error_reply_without_a_known_id_has_null_id() -> None:
    head = split_reply(encode_error_reply(None, "ProtocolError", "x"))
    assert head.request_id is None
    assert head.ok is False


def test_replies_in_another_key_order_are_decoded_instead_of_sliced() -> None:
    head = split_reply(b'{"ok":true,"result":[1],"id":5}')
    assert (head.request_id, head.ok, head.result_start) == (5, True, -1)


def test_reply_with_non_integer_id_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match="not an integer"):
        split_reply(b'{"ok":true,"id":"5"}')


def test_requests_carry_id_op_inputs_and_parameters() -> None:
    request = orjson.loads(encode_request(3, "call", {"text": "hi"}, None))
    assert request == {"id": 3, "op": "call", "inputs": {"text": "hi"}, "parameters": {}}


def test_raw_call_request_splices_the_body_and_its_id_can_be_recovered() -> None:
    body = encode_raw_call_request(9, b'{"inputs": {"text": "x"}}')
    assert orjson.loads(body) == {"id": 9, "op": "call", "body": {"inputs": {"text": "x"}}}
    assert recover_request_id(body) == 9
    assert recover_request_id(b'{"id":9,"op":"call","body":{broken') == 9
    assert recover_request_id(b"garbage") is None


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, 10_000])
def test_frame_buffer_splits_any_chunking_of_a_stream(chunk: int) -> None:
    bodies = [b'{"id":1}', b"", bytes(range(256)) * 3, b"x" * 5000, b"{}"]
    stream = b"".join(encode_frame(body) for body in bodies)
    frames = FrameBuffer()
    got: list[bytes] = []
    for start in range(0, len(stream), chunk):
        got += frames.feed(stream[start : start + chunk])
    assert got == bodies
    assert frames.partial == 0


def test_frame_buffer_keeps_a_partial_frame_and_refuses_an_oversized_length() -> None:
    frames = FrameBuffer()
    assert frames.feed(encode_frame(b"one") + encode_frame(b"two")[:5]) == [b"one"]
    assert frames.partial == 5
    assert frames.feed(encode_frame(b"two")[5:]) == [b"two"]
    with pytest.raises(FrameError, match="exceeds"):
        FrameBuffer().feed(struct.pack(">I", MAX_FRAME_BYTES + 1))


# -- streams, micro-batches, deadlines and cancels --------------------------------------------


def test_a_stream_item_is_read_from_its_prefix_and_its_bytes_sliced_out() -> None:
    item = encode_result({"token": "}", "n": [1, 2]})
    body = encode_item_reply(12, item)
    head = split_reply(body)
    assert (head.request_id, head.ok, head.kind, head.batch) == (12, True, ITEM, 0)
    assert body[head.result_start : -1] == item
    assert orjson.loads(body) == {"id": 12, "ok": True, "item": orjson.loads(item)}


def test_a_stream_end_is_its_own_kind_with_no_result() -> None:
    body = encode_end_reply(12)
    head = split_reply(body)
    assert (head.request_id, head.ok, head.kind, head.result_start) == (12, True, END, -1)
    assert orjson.loads(body) == {"id": 12, "ok": True, "end": True}


def test_items_and_ends_in_another_key_order_are_decoded_to_the_same_kinds() -> None:
    item = split_reply(b'{"ok":true,"item":[1],"id":5}')
    end = split_reply(b'{"end":true,"id":6,"ok":true}')
    plain = split_reply(b'{"ok":true,"result":null,"id":7}')
    assert (item.request_id, item.kind, item.result_start) == (5, ITEM, -1)
    assert (end.request_id, end.kind) == (6, END)
    assert (plain.request_id, plain.kind) == (7, RESULT)


def test_a_batch_lead_names_the_batch_size_and_keeps_its_result_sliceable() -> None:
    result = encode_result([0.25, {"k": "v"}])
    body = encode_ok_reply(3, result, batch=17)
    head = split_reply(body)
    assert (head.request_id, head.ok, head.kind, head.batch) == (3, True, RESULT, 17)
    assert body[head.result_start : -1] == result
    assert orjson.loads(body) == {"id": 3, "ok": True, "batch": 17, "result": orjson.loads(result)}
    assert split_reply(encode_ok_reply(4, result)).batch == 0, "not a lead: no batch"


def test_an_error_reply_may_say_the_handler_still_runs() -> None:
    running = encode_error_reply(8, "GatewayTimeoutError", "past 1s", running=True)
    done = encode_error_reply(9, "GatewayTimeoutError", "past 1s")
    assert error_running(running) and not error_running(done)
    assert split_reply(running).ok is False
    assert orjson.loads(running)["error"] == {
        "type": "GatewayTimeoutError", "message": "past 1s", "running": True,
    }
    assert "running" not in orjson.loads(done)["error"]
    # a message that merely mentions it is escaped and does not count
    assert not error_running(encode_error_reply(10, "ValueError", '"running":true'))


def test_a_call_request_may_carry_its_deadline_and_a_cancel_names_its_call() -> None:
    payload = b'{"inputs": {"x": 1}}'
    body = encode_raw_call_request(11, payload, timeout_s=2.5)
    assert orjson.loads(body) == {
        "id": 11, "op": "call", "timeout": 2.5, "body": {"inputs": {"x": 1}},
    }
    assert recover_request_id(body) == 11
    assert "timeout" not in orjson.loads(encode_raw_call_request(11, payload))
    # a deadline already passed still reaches the worker as a positive one
    assert orjson.loads(encode_raw_call_request(12, payload, timeout_s=-3))["timeout"] > 0
    assert orjson.loads(encode_cancel_request(11)) == {"id": 0, "op": "cancel", "call": 11}
