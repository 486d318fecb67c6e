"""Issue 26 on the local backend: micro-batching, streamed answers and deadlines that cancel,
through a live server's HTTP path with plugins that report what they saw."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from deploy_support import NS
from serving_support import (
    BATCHING,
    DEADLINE_ASYNC,
    DEADLINE_SYNC,
    STREAMING,
    check_a_hung_up_client_cancels_its_call,
    check_a_plain_answer_is_still_json,
    check_a_slow_call_ends_in_504_and_is_cancelled,
    check_an_error_fails_exactly_its_batch,
    check_an_error_mid_stream_ends_it,
    check_batches_form_and_answers_stay_apart,
    check_ndjson_arrives_item_by_item,
    check_sse_arrives_event_by_event,
    check_the_header_lowers_the_deadline_only,
    check_wrong_length_is_a_plugin_error,
    concurrent_calls,
    deploy_plugin,
    post,
)
from support import LiveServer

LIMIT_S = 1.5


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(home=tmp_path_factory.mktemp("serving")).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def batching(serving: LiveServer) -> str:
    return deploy_plugin(serving, BATCHING,
                         {"max_batch_size": 8, "batch_wait_timeout_s": 0.05}, "batch")


@pytest.fixture(scope="module")
def streaming(serving: LiveServer) -> str:
    return deploy_plugin(serving, STREAMING, {"num_replicas": 1}, "stream")


@pytest.fixture(scope="module")
def deadline(serving: LiveServer) -> str:
    return deploy_plugin(serving, DEADLINE_ASYNC, {"request_timeout_s": LIMIT_S}, "deadline")


def test_concurrent_calls_are_answered_in_batches_each_with_its_own_answer(
    serving: LiveServer, batching: str
) -> None:
    check_batches_form_and_answers_stay_apart(serving, batching)


def test_an_error_fails_every_call_of_its_batch_and_no_other(
    serving: LiveServer, batching: str
) -> None:
    check_an_error_fails_exactly_its_batch(serving, batching)


def test_a_batch_result_of_the_wrong_length_is_a_plugin_error(
    serving: LiveServer, batching: str
) -> None:
    check_wrong_length_is_a_plugin_error(serving, batching)


def test_without_max_batch_size_calls_are_answered_one_by_one(serving: LiveServer) -> None:
    route = deploy_plugin(serving, BATCHING, {"num_replicas": 1}, "nobatch")
    answers = concurrent_calls(serving, route, [{"id": i} for i in range(8)])
    assert {r.json()["size"] for r in answers} == {1}
    assert {r.json()["batch"] for r in answers} == {-1}  # the single-call handler answered


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_ndjson_items_arrive_as_they_are_yielded(
    serving: LiveServer, streaming: str, mode: str
) -> None:
    check_ndjson_arrives_item_by_item(serving, streaming, mode)


def test_server_sent_events_when_the_client_accepts_them(
    serving: LiveServer, streaming: str
) -> None:
    check_sse_arrives_event_by_event(serving, streaming)


def test_an_exception_mid_stream_ends_it_with_an_error(
    serving: LiveServer, streaming: str
) -> None:
    check_an_error_mid_stream_ends_it(serving, streaming)
    check_a_plain_answer_is_still_json(serving, streaming)


def test_a_stream_through_the_version_route(serving: LiveServer, streaming: str) -> None:
    name = streaming.rsplit("/", 1)[1]
    check_ndjson_arrives_item_by_item(serving, f"/inference/{NS}/custom_plugin_{name}_1_0_0",
                                      "async")


def test_a_stream_through_v1_inference(serving: LiveServer, streaming: str) -> None:
    name = streaming.rsplit("/", 1)[1]
    with serving.client() as c:
        lines = []
        with c.stream("POST", "/v1/inference", headers={"X-Namespace": NS},
                      json={"inference_name": name, "inputs": {"n": 3, "gap": 0.3}}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/x-ndjson")
            started = time.monotonic()
            for line in r.iter_lines():
                if line:
                    lines.append((time.monotonic() - started, line))
    assert [text for _, text in lines] == ['{"i":0}', '{"i":1}', '{"i":2}']
    assert lines[-1][0] - lines[0][0] > 0.4


def test_a_slow_async_call_answers_504_at_its_deadline_and_is_cancelled(
    serving: LiveServer, deadline: str
) -> None:
    check_a_slow_call_ends_in_504_and_is_cancelled(serving, deadline, LIMIT_S)


def test_the_request_header_lowers_the_deadline_never_raises_it(
    serving: LiveServer, deadline: str
) -> None:
    check_the_header_lowers_the_deadline_only(serving, deadline, LIMIT_S)


def test_a_client_that_hangs_up_cancels_its_call(serving: LiveServer, deadline: str) -> None:
    check_a_hung_up_client_cancels_its_call(serving, deadline)


def test_a_stuck_plain_call_sends_new_calls_to_the_other_replica(serving: LiveServer) -> None:
    route = deploy_plugin(serving, DEADLINE_SYNC, {"num_replicas": 2}, "stuck")
    answers = {post(serving, route, {"id": f"warm{i}"}).json()["replica"] for i in range(6)}
    assert len(answers) == 2  # both replicas answer
    r = post(serving, route, {"id": "slow", "sleep": 4}, headers={"X-Request-Timeout": "0.5"})
    assert r.status_code == 504
    # the replica whose thread still sleeps is busy: for the next seconds every call goes to
    # the other one, at once
    started = time.monotonic()
    seen = [post(serving, route, {"id": f"next{i}"}).json()["replica"] for i in range(6)]
    assert time.monotonic() - started < 2.0
    assert len(set(seen)) == 1, seen


def test_a_queued_call_past_its_deadline_is_dropped_unrun(serving: LiveServer) -> None:
    route = deploy_plugin(serving, DEADLINE_SYNC, {"num_replicas": 1}, "queued")
    import threading

    slow = threading.Thread(target=post, args=(serving, route, {"id": "first", "sleep": 2}))
    slow.start()
    time.sleep(0.3)
    queued = post(serving, route, {"id": "queued"}, headers={"X-Request-Timeout": "0.5"})
    slow.join()
    assert queued.status_code == 504
    ran = post(serving, route, {"op": "ran"}).json()["ran"]
    assert "first" in ran and "queued" not in ran


def test_batched_calls_count_one_by_one_for_the_autoscaler(serving: LiveServer) -> None:
    """24 callers in batches of up to 8: the autoscaler (aiming at 8 calls in flight per
    replica) sees 24 calls, not 3 batches, and adds replicas; every answer stays the caller's."""
    import threading

    route = deploy_plugin(serving, BATCHING, {
        "max_batch_size": 8, "batch_wait_timeout_s": 0.02, "min_replicas": 1,
        "max_replicas": 3, "target_ongoing_requests": 8, "upscale_delay_s": 0,
        "downscale_delay_s": 60,
    }, "scalebatch")
    name = route.rsplit("/", 1)[1]
    stop = threading.Event()
    wrong: list[tuple[int, object]] = []

    def caller(i: int) -> None:
        with serving.client() as c:
            while not stop.is_set():
                r = c.post(route, json={"inputs": {"id": i}, "parameters": {"echo": i}})
                if r.status_code != 200 or r.json()["id"] != i or r.json()["echo"] != i:
                    wrong.append((i, r.text))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20
        target = 1
        with serving.client() as c:
            while time.monotonic() < deadline and target < 2:
                body = c.get(f"/v1/namespaces/{NS}/plugins/{name}_1_0_0/status").json()
                target = body.get("replicas", {}).get("target", 1)
                time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert target >= 2, body
    assert wrong == []
    assert body["batching"]["mean_batch_size"] > 1


LOOP_REPORT = """
import asyncio

class Service:
    async def run_inference(self, inputs, parameters):
        return {"loop": type(asyncio.get_running_loop()).__module__}

def get_inference_service(**kwargs):
    return Service()
"""


def test_a_replica_runs_its_async_handlers_on_uvloop(serving: LiveServer) -> None:
    # uvloop's loop costs a third of the stdlib one per call on the replica socket (issue 27)
    route = deploy_plugin(serving, LOOP_REPORT, {"num_replicas": 1}, "loop")
    answer = post(serving, route, {})
    assert answer.status_code == 200, answer.text
    assert answer.json()["loop"].startswith("uvloop"), answer.json()
