"""Batch jobs on the Ray backend: Ray Data map_batches gives the local backend's results, with
the pipeline run in sandboxed batch workers that Ray Data's actors start on their node."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from batch_support import (
    batch_plugin_files,
    download,
    steps_by_hand,
    submit,
    upload,
    upload_example,
    wait_batch,
)
from ray_support import RAY_AVAILABLE, RAY_SKIP_REASON, ray_server_env
from support import EXAMPLES, LiveServer, unique_name

from plughost.batch.ray_data import WINDOW_CHUNKS

pytestmark = pytest.mark.skipif(not RAY_AVAILABLE, reason=RAY_SKIP_REASON)

CHUNK_ROWS = 16
# the Ray processes that do a job's work: the window task and Ray Data's step actors
JOB_PROCESS_MARKS = ("run_window", "SandboxedSteps", "MapWorker", "MapBatches")


def _encode(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "jsonl":
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        return "\n".join(json.dumps(r) for r in records).encode() + b"\n"
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def _batch_workers(server: LiveServer) -> list[tuple[int, list[bytes]]]:
    """The sandboxed batch workers (and their bubblewrap wrappers) the server's Ray started:
    pid and argv of each."""
    assert server.proc is not None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"plughost.batch.worker" not in argv:
            continue
        pid = int(entry.name)
        while pid > 1 and pid != server.proc.pid:
            pid = _parent(pid)
        if pid == server.proc.pid:
            found.append((int(entry.name), argv))
    return found


def _ray_job_pids(server: LiveServer) -> list[int]:
    """The server's Ray processes (its own local Ray shares its session) running job work."""
    assert server.proc is not None
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) != server.proc.pid:
            continue
        if title.startswith("ray::") and any(m in title for m in JOB_PROCESS_MARKS):
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {**ray_server_env(), "PLUGHOST_BATCH_CHUNK_ROWS": str(CHUNK_ROWS)}
    live = LiveServer(home=tmp_path_factory.mktemp("ray-batch"), extra_env=env)
    live.start(timeout=180)
    try:
        yield live
    finally:
        live.stop(timeout=60)


@pytest.fixture(scope="module")
def hash_plugin(ray_server: LiveServer) -> str:
    return upload_example(ray_server, EXAMPLES / "hash_embedder", unique_name("hash"))


@pytest.fixture(scope="module")
def steps_plugin(ray_server: LiveServer) -> str:
    name = unique_name("steps")
    return upload(ray_server, batch_plugin_files(name, batch_size=8), name)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_ray_data_output_equals_the_steps_run_by_hand(
    ray_server: LiveServer, hash_plugin: str, fmt: str, tmp_path: Path
) -> None:
    rows = pd.DataFrame({"text": [f"ray row {i}" for i in range(90)]})
    r = submit(ray_server, hash_plugin, _encode(rows, fmt), f"rows.{fmt}")
    assert r.status_code == 202 and r.json()["input_format"] == fmt, r.text
    body = wait_batch(ray_server, r.json()["status_endpoint"], timeout=300)
    assert body["status"] == "completed", body
    assert body["rows_total"] == body["rows_done"] == 90 and body["rows_failed"] == 0
    out = pd.read_parquet(download(body["output_url"], tmp_path / "out.parquet"))
    expected = steps_by_hand(
        EXAMPLES / "hash_embedder",
        rows.assign(mime_type="text/plain"),
        tmp_path,
        64,
        mappings={"text": "text"},
    )
    pd.testing.assert_frame_equal(out, expected[list(out.columns)], check_dtype=False)


def test_ray_data_runs_prepare_filters_and_skips_failing_batches(
    ray_server: LiveServer, steps_plugin: str, tmp_path: Path
) -> None:
    plugin = steps_plugin
    texts = [f"keep {i}" if i % 3 else f"drop {i}" for i in range(48)]
    texts[4] = "keep boom"
    content = "\n".join(json.dumps({"text": t}) for t in texts).encode()
    r = submit(ray_server, plugin, content, "in.jsonl", parameters={"factor": 2}, on_error="skip")
    body = wait_batch(ray_server, r.json()["status_endpoint"], timeout=300)
    assert body["status"] == "completed", body
    out = pd.read_parquet(download(body["output_url"], tmp_path / "out.parquet"))
    assert body["rows_failed"] > 0 and "boom in this batch" in body["errors"][0]["message"]
    assert all(t.startswith("keep") and "boom" not in t for t in out["text"])
    assert list(out["scaled"]) == [2 * len(t) for t in out["text"]]
    assert len(out) + body["rows_failed"] == sum(t.startswith("keep") for t in texts)


def test_ray_on_error_fail_fails_with_the_message_and_range(
    ray_server: LiveServer, steps_plugin: str
) -> None:
    texts = [f"row {i}" for i in range(40)]
    texts[33] = "boom"  # batches of 8 rows: 32..39
    r = submit(
        ray_server, steps_plugin, _encode(pd.DataFrame({"text": texts}), "jsonl"), "in.jsonl"
    )
    body = wait_batch(ray_server, r.json()["status_endpoint"], timeout=300)
    assert body["status"] == "failed" and body["output_url"] is None, body
    assert "rows 32-39 failed: ValueError: boom in this batch" in body["message"], body
    assert [(e["first_row"], e["last_row"]) for e in body["errors"]] == [(32, 39)], body


def test_ray_cancel_stops_the_ray_work_and_keeps_no_output(
    ray_server: LiveServer, steps_plugin: str
) -> None:
    rows = pd.DataFrame({"text": [f"slow {i}" for i in range(600)]})  # ~30 s of steps
    r = submit(ray_server, steps_plugin, _encode(rows, "jsonl"), "slow.jsonl")
    endpoint, batch_id = r.json()["status_endpoint"], r.json()["batch_id"]
    running = wait_batch(ray_server, endpoint, timeout=120, until=("running",))
    deadline = time.monotonic() + 180

    def wrapped() -> list[list[bytes]]:
        # a worker seen before its entry shell (which puts it in its cgroups) exec'd bubblewrap
        # has /bin/sh as argv[0]: only the wrappers that run count
        return [argv for _, argv in _batch_workers(ray_server) if b"bwrap" in argv[0]]

    while not (_ray_job_pids(ray_server) and wrapped()):
        assert time.monotonic() < deadline, f"no Ray job process seen\n{ray_server.logs()[-3000:]}"
        time.sleep(0.2)
    # the steps run in batch workers under bubblewrap, not in Ray's own processes
    running_wrapped = wrapped()
    assert running_wrapped and all(b"--unshare-net" in argv for argv in running_wrapped), (
        running_wrapped
    )
    with ray_server.client() as c:
        cancelled = c.delete(endpoint)
        again = c.delete(endpoint)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert again.status_code == 409 and again.json()["error"]["type"] == "ConflictError"
    deadline = time.monotonic() + 60
    while (left := _ray_job_pids(ray_server)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], "the job's Ray task and actors outlived the cancel"
    while (workers := _batch_workers(ray_server)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert workers == [], "the job's sandboxed batch workers outlived the cancel"
    with ray_server.client() as c:
        first = c.get(endpoint).json()
        time.sleep(3)
        later = c.get(endpoint).json()
    assert later["status"] == "cancelled" and later["output_url"] is None, later
    assert later["rows_done"] == first["rows_done"] < 600  # no more progress after cancel
    assert running["rows_total"] == 600
    assert not (ray_server.home / "batches" / batch_id).exists()


@pytest.mark.slow
@pytest.mark.timeout(600)  # two servers, each starting its own Ray, and two windows
def test_a_ray_job_survives_a_server_crash_with_no_row_twice(tmp_path: Path) -> None:
    env = {**ray_server_env(), "PLUGHOST_BATCH_CHUNK_ROWS": str(CHUNK_ROWS)}
    live = LiveServer(home=tmp_path / "home", extra_env=env).start(timeout=180)
    try:
        name = unique_name("steps")
        plugin = upload(live, batch_plugin_files(name, batch_size=8), name)
        # a Ray window is WINDOW_CHUNKS chunks: the fast first window is committed, then
        # the server dies while the slow second window is on Ray
        first = WINDOW_CHUNKS * CHUNK_ROWS
        texts = [f"row {i}" for i in range(first)] + [f"slow {i}" for i in range(160)]
        rows = pd.DataFrame({"text": texts})
        r = submit(live, plugin, _encode(rows, "jsonl"), "in.jsonl")
        endpoint = r.json()["status_endpoint"]
        deadline = time.monotonic() + 300
        with live.client() as c:
            while (done := c.get(endpoint).json()["rows_done"]) < first:
                assert time.monotonic() < deadline, f"no progress\n{live.logs()[-3000:]}"
                time.sleep(0.2)
        assert done < len(rows), "the job finished before the crash"
        live.kill()
        live.start(timeout=180)
        body = wait_batch(live, endpoint, timeout=300)
        assert body["status"] == "completed", body
        out = pd.read_parquet(download(body["output_url"], tmp_path / "out.parquet"))
    finally:
        live.stop(timeout=60)
    assert body["rows_done"] == len(rows) and body["rows_failed"] == 0
    assert list(out["text"]) == list(rows["text"])  # every row once, in input order
