"""Runs inside Ray (never in the server): one window of a job's chunks through Ray Data.

:func:`run_window` is a Ray task that loads no plugin code. It builds a Ray ``Dataset`` from
the window's chunks (one block each) and ``map_batches`` sends each chunk to an actor pool
of :class:`~plughost.batch.ray_steps.SandboxedSteps`, each of which hands it to the
sandboxed batch worker it started on its node; ``prepare`` and the steps run there, on the
chunk, as on the local backend. Each chunk comes back as one row: its output rows as Arrow
IPC bytes, its error ranges, the row limit ``prepare`` set, or a fatal start error.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from plughost.batch.ray_steps import SandboxedSteps


def run_window(
    config: dict[str, Any], options: dict[str, Any], *tables: pa.Table
) -> list[dict[str, Any]]:
    """The window's results as ``{"ipc", "errors", "limit", "fatal"}`` dicts."""
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_arrow(list(tables))
    ds = ds.map_batches(
        SandboxedSteps,
        batch_size=options["batch_rows"],
        batch_format="pyarrow",
        concurrency=options.get("concurrency", 1),
        fn_constructor_kwargs={"config": config},
        num_cpus=options.get("num_cpus", 1),
        memory=options.get("memory_bytes"),
    )
    return [dict(row) for row in ds.take_all()]
