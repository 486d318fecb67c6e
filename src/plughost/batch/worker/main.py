"""A batch worker: frames in on stdin, frames out on the original stdout.

Started by the server (:mod:`plughost.batch.launcher`) like a realtime replica: ``python -I``,
in the plugin folder, wrapped by the sandbox when there is one. The sandbox policy
(``--sandbox``) is applied before any plugin code runs; file descriptor 1 is then pointed at
stderr so a plugin's ``print`` cannot corrupt the frames.
The first frame is ``{"type": "init", "parameters", "manifest", "dataset_size"}``; the worker
answers ``ready`` (or ``fatal``), then one ``result`` per ``chunk`` until stdin closes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa

from plughost.batch.pipeline import LoadedPipeline, load_pipeline, run_chunk
from plughost.batch.protocol import ROW_ID, ipc_to_table, table_to_ipc, write_frame
from plughost.batch.rows import (
    FALLBACK_SOURCES,
    Supplied,
    data_sources,
    name_the_columns,
    restore_input_columns,
    supply_columns,
)
from plughost.batch.worker.pipes import PipeLink
from plughost.replica.loader import install_import_paths
from plughost.runtime_api import container_transport

log = logging.getLogger("plughost.batch.worker")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plughost.batch.worker")
    parser.add_argument("--plugin-dir", type=Path, required=True)
    parser.add_argument("--sandbox", default=None, help="sandbox policy (JSON)")
    parser.add_argument("--env-path", default=None, help="plugin environment folder")
    return parser.parse_args(argv)


def _divert_stdout() -> IO[bytes]:
    """The frames' stream (a copy of fd 1); fd 1 itself now writes to stderr."""
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return frames


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def answer_chunk(
    pipeline: LoadedPipeline,
    header: dict[str, Any],
    body: bytes,
    sources: Sequence[str] = FALLBACK_SOURCES,
) -> tuple[dict[str, Any], bytes]:
    """The ``result`` frame (header and output rows) for one ``chunk`` frame.

    The steps get the chunk with Mixpeek's columns (``data`` from ``sources``, see
    :mod:`plughost.batch.rows`); the output keeps them only where the steps changed them."""
    chunk = ipc_to_table(body).to_pandas()
    given, supplied = supply_columns(chunk, sources)
    entry, payload = _run_one(pipeline, given, supplied)
    reply = {
        "type": "result",
        "chunk": header.get("chunk"),
        "errors": entry["errors"],
        "limit": entry["limit"],
    }
    return reply, payload


def answer_block(
    pipeline: LoadedPipeline,
    header: dict[str, Any],
    body: bytes,
    sources: Sequence[str] = FALLBACK_SOURCES,
) -> tuple[dict[str, Any], bytes]:
    """The ``results`` frame for one ``block`` frame: consecutive chunks as one table.

    Each chunk runs exactly as its own ``chunk`` frame would (``prepare`` and the steps see
    that chunk alone); only the Arrow decoding and Mixpeek's columns run once for the block.
    The reply lists, in order, each chunk's errors, limit and output size in bytes; the body
    is each chunk's output Arrow stream, one after the other."""
    block = ipc_to_table(body).to_pandas()
    given, supplied = supply_columns(block, sources)
    entries: list[dict[str, Any]] = []
    payloads: list[bytes] = []
    offset = 0
    for index, rows in header.get("chunks") or []:
        part = slice(offset, offset + int(rows))
        offset += int(rows)
        mine = {c: None if o is None else o.iloc[part] for c, o in supplied.items()}
        entry, payload = _run_one(pipeline, given.iloc[part], mine)
        entries.append({"chunk": index, **entry, "bytes": len(payload)})
        payloads.append(payload)
    return {"type": "results", "chunks": entries}, b"".join(payloads)


def _run_one(
    pipeline: LoadedPipeline, given: pd.DataFrame, supplied: Supplied
) -> tuple[dict[str, Any], bytes]:
    """One chunk (with Mixpeek's columns) through the pipeline: its errors and limit, and
    its output rows as an Arrow stream (empty when there are none, or they cannot be
    stored: then an ``output`` error says why)."""
    result = run_chunk(pipeline, given)
    errors = name_the_columns(list(result.errors), given)
    frame = restore_input_columns(result.frame, given, supplied)
    try:
        payload = table_to_ipc(pa.Table.from_pandas(frame, preserve_index=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        ids = [int(i) for i in given[ROW_ID]] if len(given) else [0]
        errors.append(
            {
                "first_row": min(ids),
                "last_row": max(ids),
                "rows": len(frame),
                "stage": "output",
                "message": f"the steps' output cannot be stored as Parquet: {_describe(exc)}",
            }
        )
        payload = b""
    return {"errors": errors, "limit": result.limit}, payload


def serve(stdin: IO[bytes], out: IO[bytes], plugin_dir: Path) -> int:
    """Answer the server's frames until stdin ends; plugin code's container calls travel on
    the same pipes (:class:`~plughost.batch.worker.pipes.PipeLink`)."""
    link = PipeLink(stdin, out)
    link.start()
    container_transport.install(link.submit)
    first = link.next_frame()
    if first is None or first[0].get("type") != "init":
        link.write({"type": "fatal", "message": "expected an init frame"})
        return 2
    init = first[0]
    try:
        install_import_paths(plugin_dir)
        pipeline = load_pipeline(
            plugin_dir,
            init.get("parameters") or {},
            init.get("manifest") or {},
            init.get("dataset_size"),
            container=container_transport.plugin_container(),
        )
    except Exception as exc:  # noqa: BLE001 - any failure of plugin code is reported, then we exit
        traceback.print_exc()
        link.write({"type": "fatal", "message": f"cannot load pipeline.py: {_describe(exc)}"})
        return 1
    sources = data_sources(init.get("manifest"))
    link.write({"type": "ready"})
    while (frame := link.next_frame()) is not None:
        header, body = frame
        if header.get("type") == "chunk":
            link.write(*answer_chunk(pipeline, header, body, sources))
        elif header.get("type") == "block":
            link.write(*answer_block(pipeline, header, body, sources))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    out = _divert_stdout()
    try:
        if args.sandbox is not None:
            from plughost.sandbox.policy import RunnerPolicy
            from plughost.sandbox.runner import enter as enter_sandbox

            enter_sandbox(RunnerPolicy.from_json(args.sandbox))
            from plughost.egress.relay import start_from_env

            start_from_env()  # an allowlisted namespace's way to the egress proxy
    except Exception as exc:  # noqa: BLE001 - reported to the server as the start error
        write_frame(out, {"type": "fatal", "message": f"sandbox: {_describe(exc)}"})
        return 1
    os.chdir(args.plugin_dir)
    if args.env_path:
        # after site-packages, as for replicas: it never shadows the base set
        sys.path.append(args.env_path)
    return serve(sys.stdin.buffer, out, args.plugin_dir.resolve())
