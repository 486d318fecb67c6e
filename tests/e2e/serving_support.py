"""Plugins and checks of issue 26 (micro-batching, streaming, deadlines), shared by the local
backend's module (test_serving.py) and Ray's (test_serving_ray.py): each check takes a
live server and runs through the real HTTP path."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
from deploy_support import NS, deploy, upload, wait_for
from prometheus_client.parser import text_string_to_metric_families
from support import PIPELINE, LiveServer, unique_name, zip_bytes

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
features = []
serve_config = {serve_config}
"""

# Batches: every answer says which batch (its sequence number) and how big it was; a call
# with "fail" fails its whole batch, naming the ids of that batch in the error.
BATCHING = """
import time

class Service:
    def __init__(self):
        self.sizes = []  # batches run one at a time, in the plugin thread

    def run_inference(self, inputs, parameters):
        return {"id": inputs.get("id"), "size": 1, "batch": -1}

    def run_inference_batch(self, inputs, parameters):
        ids = [i.get("id") for i in inputs]
        self.sizes.append(len(inputs))
        number = len(self.sizes)
        if any(i.get("fail") for i in inputs):
            raise ValueError("batch refused: ids=" + ",".join(str(i) for i in ids))
        time.sleep(0.05)
        if any(i.get("short") for i in inputs):
            return [{"id": ids[0]}] * (len(inputs) - 1)
        return [
            {"id": i.get("id"), "size": len(inputs), "batch": number, "echo": p.get("echo")}
            for i, p in zip(inputs, parameters)
        ]

def get_inference_service(**kwargs):
    return Service()
"""

# Streams: an async generator by default, a plain one with mode "sync", a plain answer with
# mode "plain"; "fail_at" raises before that item.
STREAMING = """
import asyncio
import time

class Service:
    def run_inference(self, inputs, parameters):
        mode = inputs.get("mode", "async")
        if mode == "plain":
            return {"plain": True}
        if mode == "sync":
            return self._sync(inputs)
        return self._async(inputs)

    def _sync(self, inputs):
        for i in range(inputs.get("n", 3)):
            if inputs.get("fail_at") == i:
                raise RuntimeError(f"stream broke at {i}")
            yield {"i": i}
            time.sleep(inputs.get("gap", 0.4))

    async def _async(self, inputs):
        for i in range(inputs.get("n", 3)):
            if inputs.get("fail_at") == i:
                raise RuntimeError(f"stream broke at {i}")
            yield {"i": i}
            await asyncio.sleep(inputs.get("gap", 0.4))

def get_inference_service(**kwargs):
    return Service()
"""

# Deadlines, async: counts the calls it started and those cancelled under it.
DEADLINE_ASYNC = """
import asyncio

class Service:
    def __init__(self):
        self.started = 0
        self.cancelled = 0
        self.finished = 0

    async def run_inference(self, inputs, parameters):
        if inputs.get("op") == "stats":
            return {"started": self.started, "cancelled": self.cancelled,
                    "finished": self.finished}
        self.started += 1
        try:
            await asyncio.sleep(inputs.get("sleep", 0))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return {"slept": inputs.get("sleep", 0)}

def get_inference_service(**kwargs):
    return Service()
"""

# Deadlines, plain: a thread that cannot be stopped; says which replica answered and which
# calls ran (by id).
DEADLINE_SYNC = """
import time

class Service:
    def __init__(self):
        self.ran = []

    def run_inference(self, inputs, parameters):
        if inputs.get("op") == "ran":
            return {"ran": list(self.ran), "replica": str(id(self))}
        self.ran.append(inputs.get("id"))
        time.sleep(inputs.get("sleep", 0))
        return {"id": inputs.get("id"), "replica": str(id(self))}

def get_inference_service(**kwargs):
    return Service()
"""


def deploy_plugin(server: LiveServer, realtime: str, serve_config: dict[str, Any],
                  prefix: str, timeout: float = 120.0) -> str:
    """Upload and deploy a plugin; its inference route (the alias)."""
    name = unique_name(prefix)
    archive = zip_bytes({
        "manifest.py": MANIFEST.format(name=name, serve_config=repr(serve_config)),
        "pipeline.py": PIPELINE,
        "realtime.py": realtime,
    })
    with server.client() as c:
        pid = upload(c, name, archive)
        deploy(c, pid)
        body, _ = wait_for(c, pid, {"deployed", "failed"}, timeout=timeout)
        assert body["status"] == "deployed", (body, server.logs()[-3000:])
    return f"/inference/{NS}/{name}"


def post(server: LiveServer, route: str, inputs: dict[str, Any], timeout: float = 60.0,
         **kw: Any) -> httpx.Response:
    with server.client() as c:
        return c.post(route, json={"inputs": inputs, "parameters": kw.pop("parameters", {})},
                      timeout=timeout, **kw)


def concurrent_calls(server: LiveServer, route: str, inputs: list[dict[str, Any]]
                     ) -> list[httpx.Response]:
    """All ``inputs`` at once, one thread each, released together."""
    results: list[httpx.Response | None] = [None] * len(inputs)
    gate = threading.Barrier(len(inputs))

    def one(i: int) -> None:
        with server.client() as c:
            gate.wait()
            results[i] = c.post(route, json={"inputs": inputs[i],
                                              "parameters": {"echo": inputs[i].get("id")}})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def metric(server: LiveServer, name: str, route: str, suffix: str = "_total") -> float | None:
    """A per-deployment sample of /metrics for the plugin behind ``route`` (its alias)."""
    plugin = route.rsplit("/", 1)[1]
    with server.client() as c:
        text = c.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name + suffix and sample.labels.get("plugin") == plugin:
                return float(sample.value)
    return None


# -- batching ---------------------------------------------------------------------------------
def check_batches_form_and_answers_stay_apart(server: LiveServer, route: str) -> None:
    calls = [{"id": i} for i in range(24)]
    answers = concurrent_calls(server, route, calls)
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    bodies = [r.json() for r in answers]
    # every caller got its own element (its id, and its own parameters)
    assert [b["id"] for b in bodies] == list(range(24))
    assert [b["echo"] for b in bodies] == list(range(24))
    sizes = [b["size"] for b in bodies]
    assert max(sizes) > 1, sizes  # batches really formed
    assert max(sizes) <= 8, sizes  # never above max_batch_size
    # answers that name the same batch agree on its size, and it holds that many calls
    by_batch: dict[int, list[int]] = {}
    for b in bodies:
        by_batch.setdefault(b["batch"], []).append(b["size"])
    for members in by_batch.values():
        assert len(set(members)) == 1 and members[0] == len(members), by_batch
    count = metric(server, "plughost_deployment_batch_size", route, "_count")
    total = metric(server, "plughost_deployment_batch_size", route, "_sum")
    assert count is not None and total is not None
    assert count >= len(by_batch) and total >= 24
    # the status answer shows the mean batch size
    plugin_id = f"{route.rsplit('/', 1)[1]}_1_0_0"
    with server.client() as c:
        body = c.get(f"/v1/namespaces/{NS}/plugins/{plugin_id}/status").json()
    assert body["batching"]["batches"] == count
    assert body["batching"]["mean_batch_size"] == round(total / count, 2) > 1


def check_an_error_fails_exactly_its_batch(server: LiveServer, route: str) -> None:
    calls = [{"id": i, "fail": i == 5} for i in range(16)]
    answers = concurrent_calls(server, route, calls)
    failed = {i for i, r in enumerate(answers) if r.status_code != 200}
    assert 5 in failed
    texts = {r.json()["error"]["message"] for r in answers if r.status_code != 200}
    assert len(texts) == 1, texts  # one batch failed, all with the plugin's one error
    text = texts.pop()
    assert "ValueError" in text and "batch refused" in text
    in_batch = {int(x) for x in text.split("ids=")[1].split(",")}
    assert failed == in_batch  # exactly that batch's calls failed, every other one answered
    for i, r in enumerate(answers):
        if i not in failed:
            assert r.json()["id"] == i


def check_wrong_length_is_a_plugin_error(server: LiveServer, route: str) -> None:
    answers = concurrent_calls(server, route, [{"id": i, "short": True} for i in range(4)])
    for r in answers:
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert error["type"] == "PluginError"
        assert "PluginError" in error["message"] and "results for" in error["message"]


# -- streaming --------------------------------------------------------------------------------
def read_stream(server: LiveServer, route: str, inputs: dict[str, Any],
                accept: str | None = None) -> tuple[str, list[tuple[float, str]]]:
    """The content type and each line of a streamed answer with the time it arrived."""
    headers = {"accept": accept} if accept else {}
    lines: list[tuple[float, str]] = []
    with server.client() as c:
        started = time.monotonic()
        with c.stream("POST", route, json={"inputs": inputs, "parameters": {}},
                      headers=headers) as r:
            assert r.status_code == 200, r.read()
            kind = r.headers["content-type"]
            for line in r.iter_lines():
                lines.append((time.monotonic() - started, line))
    return kind, lines


def check_ndjson_arrives_item_by_item(server: LiveServer, route: str, mode: str) -> None:
    kind, lines = read_stream(server, route, {"n": 4, "gap": 0.5, "mode": mode})
    assert kind.startswith("application/x-ndjson")
    values = [json.loads(text) for _, text in lines if text]
    assert values == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]
    first, last = lines[0][0], [t for t, text in lines if text][-1]
    # the first item came as soon as it was yielded, not with the others 1.5 s later
    assert last - first > 1.2, lines
    assert first < last / 2, lines


def check_sse_arrives_event_by_event(server: LiveServer, route: str) -> None:
    kind, lines = read_stream(server, route, {"n": 3, "gap": 0.5}, accept="text/event-stream")
    assert kind.startswith("text/event-stream")
    data = [(t, text[len("data: "):]) for t, text in lines if text.startswith("data: ")]
    assert [json.loads(d) for _, d in data[:3]] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert "event: end" in [text for _, text in lines]
    assert data[2][0] - data[0][0] > 0.8, lines


def check_an_error_mid_stream_ends_it(server: LiveServer, route: str) -> None:
    _, lines = read_stream(server, route, {"n": 4, "gap": 0.1, "fail_at": 2})
    values = [json.loads(text) for _, text in lines if text]
    assert values[:2] == [{"i": 0}, {"i": 1}]
    assert len(values) == 3
    error = values[2]
    assert error["success"] is False and error["error"]["type"] == "PluginError"
    assert "stream broke at 2" in error["error"]["message"]
    _, events = read_stream(server, route, {"n": 4, "gap": 0.1, "fail_at": 1},
                            accept="text/event-stream")
    texts = [text for _, text in events]
    assert "event: error" in texts
    assert "event: end" not in texts
    error_data = texts[texts.index("event: error") + 1]
    assert "stream broke at 1" in json.loads(error_data[len("data: "):])["error"]["message"]


def check_a_plain_answer_is_still_json(server: LiveServer, route: str) -> None:
    r = post(server, route, {"mode": "plain"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"plain": True}


# -- deadlines --------------------------------------------------------------------------------
def stats(server: LiveServer, route: str) -> dict[str, int]:
    r = post(server, route, {"op": "stats"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_stats(server: LiveServer, route: str, key: str, at_least: int,
               timeout: float = 10.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        body = stats(server, route)
        if body[key] >= at_least or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def check_a_slow_call_ends_in_504_and_is_cancelled(server: LiveServer, route: str,
                                                   limit: float) -> None:
    before = stats(server, route)
    started = time.monotonic()
    r = post(server, route, {"sleep": 30})
    took = time.monotonic() - started
    assert r.status_code == 504, r.text
    assert r.json()["error"]["type"] == "GatewayTimeoutError"
    assert limit - 0.2 < took < limit + 2.0, took
    after = wait_stats(server, route, "cancelled", before["cancelled"] + 1)
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["finished"] == before["finished"]
    # the replica answers the next call at once
    started = time.monotonic()
    quick = post(server, route, {"sleep": 0})
    assert quick.status_code == 200 and time.monotonic() - started < 1.0
    timeouts = metric(server, "plughost_deployment_request_timeouts", route)
    assert timeouts is not None and timeouts >= 1


def check_the_header_lowers_the_deadline_only(server: LiveServer, route: str,
                                              limit: float) -> None:
    started = time.monotonic()
    r = post(server, route, {"sleep": 30}, headers={"X-Request-Timeout": "0.5"})
    took = time.monotonic() - started
    assert r.status_code == 504, r.text
    assert took < limit - 0.3, took  # well before the release's own deadline
    started = time.monotonic()
    r = post(server, route, {"sleep": 30}, headers={"X-Request-Timeout": "100"})
    took = time.monotonic() - started
    assert r.status_code == 504 and took < limit + 2.0, took  # not raised past the release's
    bad = post(server, route, {"sleep": 0}, headers={"X-Request-Timeout": "soon"})
    assert bad.status_code == 400 and "X-Request-Timeout" in bad.json()["error"]["message"]


def hang_up_after(server: LiveServer, route: str, inputs: dict[str, Any], after: float) -> None:
    """Send a call on a raw socket and close it after ``after`` seconds, unanswered."""
    body = json.dumps({"inputs": inputs, "parameters": {}}).encode()
    host, port = "127.0.0.1", server.port
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"POST {route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {server.key}\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)
        time.sleep(after)


def check_a_hung_up_client_cancels_its_call(server: LiveServer, route: str) -> None:
    before = stats(server, route)
    hang_up_after(server, route, {"sleep": 30}, 0.6)
    after = wait_stats(server, route, "cancelled", before["cancelled"] + 1)
    assert after["cancelled"] == before["cancelled"] + 1, (before, after)
    assert after["finished"] == before["finished"]
    cancelled = metric(server, "plughost_deployment_request_cancellations", route)
    assert cancelled is not None and cancelled >= 1
