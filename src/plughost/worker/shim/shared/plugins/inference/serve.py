"""``BaseInferenceService``: the base class plugins derive their realtime service from.

The replica puts this shim on ``sys.path`` so that
``from shared.plugins.inference.serve import BaseInferenceService`` succeeds inside a plugin.
"""

from __future__ import annotations

from typing import Any


def _unimplemented(method: Any) -> Any:
    """Mark a base method as a placeholder a subclass is expected to override."""
    method.__plughost_unimplemented__ = True
    return method


class BaseInferenceService:
    """Base of a plugin's realtime service.

    Construction keyword arguments are kept in ``self.config``. A subclass implements
    ``run_inference(inputs, parameters)`` (plain or ``async``); calling the instance
    delegates to it. ``health()`` answers True unless overridden.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.config: dict[str, Any] = dict(kwargs)

    @_unimplemented
    def run_inference(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        """Answer one request; subclasses must override this."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement run_inference(inputs, parameters)"
        )

    def __call__(self, inputs: dict[str, Any], parameters: dict[str, Any] | None = None) -> Any:
        """Delegate to ``run_inference`` (an awaitable when that method is async)."""
        return self.run_inference(inputs, parameters or {})

    def health(self) -> bool:
        """Whether the service can answer requests."""
        return True
