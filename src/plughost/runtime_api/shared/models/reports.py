"""Each model load (its id, ok or failed, seconds) goes to the server, which counts it in
``plughost_model_loads_total`` and ``plughost_model_load_seconds``.

A report is a container request the plugin does not wait for. A replica's service usually
loads its model while it is constructed, before any server connection takes container
calls: the replica's link keeps such requests until one does (bounded), so they are not
lost. Without a server behind the process (a unit test) a report is dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from plughost.domain.container import MODEL_LOADS
from plughost.runtime_api import container_transport

log = logging.getLogger("shared.models")

OK = "ok"
FAILED = "failed"


def report_load(model: str, outcome: str, seconds: float) -> None:
    """Tell the server about one load; never raises."""
    transport = container_transport.current()
    if transport is None:
        return
    request: dict[str, Any] = {
        "target": MODEL_LOADS,
        "args": {"model": str(model)[:200], "outcome": outcome, "seconds": float(seconds)},
    }
    try:
        transport(request)
    except (OSError, RuntimeError, TypeError, ValueError) as exc:  # never fail a load for it
        log.debug("model load report not sent: %s", exc)
