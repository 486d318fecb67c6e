"""One job's plain values, shared by the scheduler and the runners: its plan, its live
counters and the exception that fails it. Light on purpose: the scheduler imports it at
start-up, while the data libraries behind the runners load with the first job."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plughost.batch.launcher import ContainerHandler, WorkerSpec
    from plughost.batch.parts import ChunkRecord, PartStore
    from plughost.batch.reader_limits import InputLimits

MAX_ERRORS = 1000  # error ranges kept per job (a status read returns them all)


class JobFailed(Exception):
    """The job must stop as failed; ``errors`` are the row ranges behind it."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


@dataclass
class Counters:
    """Live progress of one job, read by the status endpoint between database writes."""

    rows_total: int | None = None
    rows_done: int = 0
    rows_failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    run_rows: int = 0
    run_started: float = field(default_factory=time.monotonic)

    def add(self, record: ChunkRecord, this_run: bool) -> None:
        self.rows_done += record.rows_in
        self.rows_failed += record.rows_failed
        room = MAX_ERRORS - len(self.errors)
        if room > 0:  # rows_failed still counts them all
            self.errors.extend(record.errors[:room])
        if this_run:
            self.run_rows += record.rows_in

    def rows_per_second(self) -> float | None:
        elapsed = time.monotonic() - self.run_started
        return self.run_rows / elapsed if self.run_rows and elapsed > 0 else None


@dataclass
class JobPlan:
    """Everything one run of a job needs, decided by the service."""

    input_path: Path
    input_format: str
    plugin_dir: Path
    parts: PartStore
    workers: int
    chunk_rows: int
    on_error: str
    init: dict[str, Any]
    make_spec: Callable[[], WorkerSpec]
    release_spec: Callable[[WorkerSpec], None]
    start_timeout_s: float = 120.0
    max_restarts: int = 3
    # the plugin environment folder (plughost.envs) once prepared, under "path"
    env: dict[str, Path | None] = field(default_factory=dict)
    # answers plugin code's container calls for the job's organization (None: refused)
    container: ContainerHandler | None = None
    # the workers' output lines as kept (the organization's secret values masked)
    mask_line: Callable[[str], str] | None = None
    # what the reader takes from the input (line size, nesting, rows); None: the defaults
    input_limits: InputLimits | None = None
