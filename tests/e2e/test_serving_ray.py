"""Issue 26 on the Ray backend: micro-batches form in a Serve replica's sandboxed worker,
streams arrive item by item over the server's direct channel, and a call past its deadline
(or whose client hung up) is cancelled in the worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ray_support import RAY_AVAILABLE, RAY_SKIP_REASON, ray_server_env
from serving_support import (
    BATCHING,
    DEADLINE_ASYNC,
    STREAMING,
    check_a_hung_up_client_cancels_its_call,
    check_a_slow_call_ends_in_504_and_is_cancelled,
    check_an_error_fails_exactly_its_batch,
    check_an_error_mid_stream_ends_it,
    check_batches_form_and_answers_stay_apart,
    check_ndjson_arrives_item_by_item,
    check_sse_arrives_event_by_event,
    check_the_header_lowers_the_deadline_only,
    deploy_plugin,
)
from support import LiveServer

pytestmark = pytest.mark.skipif(not RAY_AVAILABLE, reason=RAY_SKIP_REASON)

LIMIT_S = 1.5


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(home=tmp_path_factory.mktemp("serving-ray"), extra_env=ray_server_env())
    live.start(timeout=180)
    try:
        yield live
    finally:
        live.stop(timeout=60)


def test_batches_on_ray(ray_server: LiveServer) -> None:
    route = deploy_plugin(ray_server, BATCHING,
                          {"max_batch_size": 8, "batch_wait_timeout_s": 0.05}, "rbatch", 240)
    check_batches_form_and_answers_stay_apart(ray_server, route)
    check_an_error_fails_exactly_its_batch(ray_server, route)


def test_streams_on_ray(ray_server: LiveServer) -> None:
    route = deploy_plugin(ray_server, STREAMING, {"num_replicas": 1}, "rstream", 240)
    check_ndjson_arrives_item_by_item(ray_server, route, "async")
    check_ndjson_arrives_item_by_item(ray_server, route, "sync")
    check_sse_arrives_event_by_event(ray_server, route)
    check_an_error_mid_stream_ends_it(ray_server, route)


def test_deadlines_and_hang_ups_on_ray(ray_server: LiveServer) -> None:
    route = deploy_plugin(ray_server, DEADLINE_ASYNC, {"request_timeout_s": LIMIT_S},
                          "rdeadline", 240)
    check_a_slow_call_ends_in_504_and_is_cancelled(ray_server, route, LIMIT_S)
    check_the_header_lowers_the_deadline_only(ray_server, route, LIMIT_S)
    check_a_hung_up_client_cancels_its_call(ray_server, route)
