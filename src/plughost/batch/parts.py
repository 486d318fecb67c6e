"""A job's results on disk: one part and one JSON marker per finished chunk.

A chunk counts as done only once its marker exists (written after the part, both by
rename), so a job interrupted anywhere resumes with exactly the chunks it finished: no row is
written twice. :meth:`PartStore.merge` streams the parts, in chunk order, into one Parquet
file. A part is an Arrow IPC file (written and read back at memory speed: the
rows are encoded as Parquet once, in the merge); parts written as Parquet by an earlier
version are read too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from plughost.batch.protocol import ROW_ID

PART_SUFFIX = ".arrow"
PART_SUFFIXES = (PART_SUFFIX, ".parquet")


@dataclass(frozen=True)
class ChunkRecord:
    """What a finished chunk contributed: input rows, rows written, failed rows, errors."""

    chunk: int
    rows_in: int
    rows_out: int
    rows_failed: int
    errors: list[dict[str, Any]] = field(default_factory=list)
    limit: int | None = None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PartStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _part(self, chunk: int) -> Path:
        return self.folder / f"part-{chunk:08d}{PART_SUFFIX}"

    def _parts(self) -> list[Path]:
        """Every part file, in chunk order."""
        return sorted(
            (p for p in self.folder.glob("part-*") if p.suffix in PART_SUFFIXES),
            key=lambda p: p.stem,
        )

    def _marker(self, chunk: int) -> Path:
        return self.folder / f"chunk-{chunk:08d}.json"

    def finished(self) -> dict[int, ChunkRecord]:
        """The chunks already done; parts without a marker (an interrupted write) go."""
        done: dict[int, ChunkRecord] = {}
        for marker in self.folder.glob("chunk-*.json"):
            raw = orjson.loads(marker.read_bytes())
            done[int(raw["chunk"])] = ChunkRecord(**raw)
        for part in self._parts():
            if int(part.stem.split("-")[1]) not in done:
                part.unlink()
        for tmp in self.folder.glob(".tmp-*"):
            tmp.unlink()
        return done

    def commit(self, record: ChunkRecord, table: pa.Table | None) -> None:
        if table is not None and table.num_rows:
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            os.close(fd)
            try:
                with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
                    out.write_table(table)
                os.replace(tmp, self._part(record.chunk))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        _atomic_write(self._marker(record.chunk), orjson.dumps(record.__dict__))

    def merge(self, target: Path, limit: int | None = None) -> int:
        """Write every part, in chunk order, to ``target`` (atomically); the rows written.

        Column types are unified across parts (a column that is all null in one part takes
        the type it has elsewhere); the row-id column is dropped; ``limit`` caps the rows."""
        parts = self._parts()
        schemas = [_read_schema(p) for p in parts]
        schema = _output_schema(schemas)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        os.close(fd)
        written = 0
        try:
            with pq.ParquetWriter(tmp, schema) as writer:
                for part in parts:
                    if limit is not None and written >= limit:
                        break
                    table = _conform(_read_part(part), schema)
                    if limit is not None:
                        table = table.slice(0, limit - written)
                    writer.write_table(table)
                    written += table.num_rows
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return written

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _read_schema(part: Path) -> pa.Schema:
    if part.suffix == ".parquet":
        return pq.read_schema(part)
    with pa.OSFile(str(part)) as source:
        return pa.ipc.open_file(source).schema


def _read_part(part: Path) -> pa.Table:
    if part.suffix == ".parquet":
        return pq.read_table(part)
    with pa.OSFile(str(part)) as source:  # the table owns its buffers: the file closes here
        return pa.ipc.open_file(source).read_all()


def _output_schema(schemas: list[pa.Schema]) -> pa.Schema:
    if not schemas:
        return pa.schema([])
    unified = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
    return pa.schema([f for f in unified if f.name != ROW_ID])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for field_ in schema:
        if field_.name in table.column_names:
            columns.append(table.column(field_.name).cast(field_.type))
        else:
            columns.append(pa.nulls(table.num_rows, field_.type))
    return pa.Table.from_arrays(columns, schema=schema)
