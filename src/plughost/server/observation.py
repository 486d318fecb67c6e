"""The observation side of one server, built beside the runtime: the replicas' log store,
the status watches, request counters and /metrics, the dashboard's samples.

The replicas' logs come first (:func:`build_logs`): the controller writes to them and reads
their last lines; the rest reads the deployment side (:func:`build_observation`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from plughost.config import Settings
from plughost.domain.release import ReleaseView
from plughost.logs import capture
from plughost.logs.output import Mask, OutputLimits, ReplicaLogs
from plughost.logs.store import LogLimits, LogStore
from plughost.metrics.collector import (
    DeployDurations,
    PlughostCollector,
    ValidationFailures,
)
from plughost.metrics.model_loads import ModelLoadMetrics
from plughost.metrics.requests import RequestMetrics
from plughost.metrics.series import Sampler
from plughost.metrics.window import RecentWindow
from plughost.persistence import history
from plughost.persistence.db import Database
from plughost.services.observe import Observe
from plughost.services.status import DeploymentStatus
from plughost.services.watch import StatusWatches

MIB = 1024 * 1024


@dataclass
class Observation:
    logs: ReplicaLogs
    observe: Observe
    watches: StatusWatches
    sampler: Sampler
    collector: PlughostCollector
    validation: ValidationFailures
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _capture: capture.CaptureFilter | None = None

    def start(self) -> None:
        """Start the log writer thread, output capture and the sampler (on the running loop)."""
        self.logs.store.start()
        self._capture = capture.install()
        self._tasks.append(asyncio.create_task(self.sampler.run(), name="plughost-sampler"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._capture is not None:
            capture.uninstall(self._capture)
            self._capture = None
        await asyncio.to_thread(self.logs.store.close)


def build_logs(settings: Settings, mask: Mask | None = None) -> ReplicaLogs:
    """The replicas' log store behind its rate limits (started by :meth:`Observation.start`);
    ``mask`` hides secret values in each line before it is kept."""
    store = LogStore(settings.logs_dir, LogLimits(
        release_cap_bytes=int(settings.logs_release_cap_mb * MIB),
        total_cap_bytes=int(settings.logs_total_cap_mb * MIB),
    ))
    rate = settings.logs_rate_kb_s * 1024
    limits = OutputLimits(rate_bytes_per_s=rate, burst_bytes=max(rate * 4, MIB),
                          max_line_bytes=settings.log_line_max_bytes)
    return ReplicaLogs(store, limits, mask=mask)


def release_output(logs: ReplicaLogs) -> Callable[[ReleaseView], capture.Sink]:
    """The controller's hook: the sink of one release's replica lines, into ``logs``."""

    def replica_output(rel: ReleaseView) -> capture.Sink:
        key = (rel.namespace_id, rel.plugin_id)

        def sink(pid: int, line: str) -> None:
            logs.emit(key, rel.id, f"r{rel.id}-{pid}", line)

        return sink

    return replica_output


def build_observation(
    db: Database,
    logs: ReplicaLogs,
    validation: ValidationFailures,
    status: DeploymentStatus,
    request_metrics: RequestMetrics,
    recent: RecentWindow,
    model_loads: ModelLoadMetrics | None = None,
) -> Observation:
    """The rest of the observation side, reading the deployment side: ``validation`` counts
    what the uploads report, ``request_metrics`` what the data plane counts, ``model_loads``
    what plugin processes report of their model loads (through container calls)."""
    durations = DeployDurations()
    status.releases.board.listeners.append(durations.on_change)
    sampler = Sampler(request_metrics, status.controller, status.routes, recent)
    collector = PlughostCollector(
        request_metrics,
        sampler.replica_figures,
        lambda: history.release_counts(db),
        durations,
        validation,
        model_loads,
    )
    return Observation(
        logs, Observe(db, logs.store), StatusWatches(status), sampler, collector, validation
    )
