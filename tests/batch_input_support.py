"""Hostile batch inputs shared by the reader's unit tests and the security suite
(tests/unit/batch/test_batch_input_limits.py, tests/security/test_batch_inputs.py)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def lying_parquet(path: Path, rows: int, claim: int) -> Path:
    """A Parquet file of ``rows`` rows whose footer says ``claim`` wherever it counts them
    (file, row group, column chunk): the count's zigzag varint patched in the footer."""
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(rows)]}), buf, compression="none")
    data = buf.getvalue()
    length = struct.unpack("<I", data[-8:-4])[0]
    footer = data[-8 - length : -8]
    old, new = _varint(rows << 1), _varint(claim << 1)
    assert footer.count(old) >= 3
    footer = footer.replace(old, new)
    path.write_bytes(data[: -8 - length] + footer + struct.pack("<I", len(footer)) + b"PAR1")
    assert pq.ParquetFile(path).metadata.num_rows == claim
    return path
