"""Schemathesis hooks for test_openapi_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

One extra check: a 5xx from an inference route must be the plugin's own exception, typed
PluginError (500) and naming it, never a request problem blamed on the plugin. The example
plugin raises TypeError for inputs without a string `text`, which fuzzed inputs rarely have.
"""

from __future__ import annotations

import io
import json

import schemathesis
from hypothesis import strategies as st


@schemathesis.check
def server_errors_are_the_plugins_own(ctx, response, case):  # type: ignore[no-untyped-def]
    if response.status_code < 500:
        return
    body = json.loads(response.content)
    error = body["error"]
    assert body["success"] is False and body["status"] == response.status_code, body
    if response.status_code == 500:
        assert error["type"] == "PluginError", f"a 500 that is not the plugin's: {body}"
        assert error["message"].startswith("plugin raised TypeError: inputs.text"), body
    return


# Batch input files of each media type the document names for the `file` part (random bytes
# are rightly refused with 422 InputFormatError, so a schema-valid case must hold one of these).
_TEXT = st.text(  # printable: control characters make a file binary, not CSV
    alphabet=st.characters(categories=["L", "N", "P", "Zs"], exclude_characters=',"'),
    max_size=20,
)


@st.composite
def _jsonl(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(_TEXT, min_size=1, max_size=4))
    return b"".join(json.dumps({"text": text}).encode() + b"\n" for text in rows)


@st.composite
def _csv(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(_TEXT.filter(lambda t: t.strip() == t and t), min_size=1, max_size=4))
    return ("text\n" + "".join(f"{text}\n" for text in rows)).encode()


@st.composite
def _parquet(draw: st.DrawFn) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = draw(st.lists(_TEXT, min_size=1, max_size=4))
    out = io.BytesIO()
    pq.write_table(pa.table({"text": rows}), out)
    return out.getvalue()


# Namespace model archives (the upload's `file` part, application/gzip): random bytes are
# rightly refused with 422, so a schema-valid case holds a tar.gz whose files pass the check
# of every format at once (config.json, a safetensors file, an ONNX ModelProto and a
# legacy torch.save file), whichever model_format was drawn.
@st.composite
def _model_archive(draw: st.DrawFn) -> bytes:
    import struct
    import tarfile

    values = draw(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=4))
    header = json.dumps({"w": {"dtype": "F32", "shape": [len(values)],
                               "data_offsets": [0, 4 * len(values)]}}).encode()
    files = {
        "config.json": json.dumps({"model_type": draw(_TEXT)}).encode(),
        "model.safetensors": struct.pack("<Q", len(header)) + header
        + struct.pack(f"<{len(values)}f", *values),
        "model.onnx": b"\x08\x07\x3a\x00",  # ir_version 7, an empty graph
        "weights.pt": b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19",
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


schemathesis.openapi.media_type("application/gzip", _model_archive())
# The upload's required text parts (name, version, model_format; text/plain): Schemathesis'
# coverage phase sends "" for a required part without a strategy once another part has one.
# A format's name is a valid value of all three (a name, a version and a format).
schemathesis.openapi.media_type(
    "text/plain",
    st.sampled_from(["safetensors", "onnx", "pytorch", "huggingface"]).map(str.encode),
)
schemathesis.openapi.media_type("application/x-ndjson", _jsonl())
schemathesis.openapi.media_type("text/csv", _csv())
schemathesis.openapi.media_type("application/vnd.apache.parquet", _parquet())


# The deploy body's canary_steps must rise strictly and end at 100: JSON Schema cannot say
# that (the document says it in words), so a list the schema admits is put in that order.
# Lists the schema refuses (types, bounds, length) are left as drawn for the negative cases.
@schemathesis.hook.apply_to(path_regex="/deploy$")
def map_body(ctx, body):  # type: ignore[no-untyped-def]
    steps = body.get("canary_steps") if isinstance(body, dict) else None
    if (
        isinstance(steps, list) and 1 <= len(steps) <= 20
        and all(type(v) in (int, float) and v == int(v) and 1 <= v <= 100 for v in steps)
    ):
        rising = sorted({int(v) for v in steps} - {100})[-19:]
        body["canary_steps"] = [*rising, 100]
    return body
