"""``shared.plugins.inference.serve``: the base class of a plugin's realtime service.

A subclass implements one of ``run_inference(inputs, parameters)``,
``_process_single(inputs, parameters)`` or ``__call__(inputs, parameters)``, each plain or
``async``. The base class's ``run_inference`` and ``__call__`` forward to whichever the
subclass defines, so any of the three styles can be called either way. The replica itself
does not go through the forwarding: its loader picks the subclass's own method, so an
``async`` one is awaited on the event loop and a plain one runs in the plugin thread.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from plughost.domain.serve_config import SERVE_CONFIG_KEYS

from ...loggers.services import get_logger

HANDLER_NAMES: tuple[str, ...] = ("run_inference", "_process_single", "__call__")
"""The methods a service may implement, in the order plughost prefers them."""


class ServeDeploymentConfig:
    """How a realtime service wants to be deployed (the manifest's ``serve_config`` keys).

    Every key is optional (None means "not said"); keyword arguments plughost does not know
    are kept in ``extra`` rather than refused, so a service written for a newer Mixpeek
    release still imports. plughost reads a ``serve_config = ServeDeploymentConfig(...)`` class
    attribute statically at validation (literal values only); the manifest's serve_config wins
    per key.
    """

    def __init__(
        self,
        enabled: bool = True,
        num_replicas: int | None = None,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        target_ongoing_requests: float | None = None,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        memory_gb: float | None = None,
        max_batch_size: int | None = None,
        batch_wait_timeout_s: float | None = None,
        request_timeout_s: float | None = None,
        **extra: Any,
    ) -> None:
        self.enabled = enabled
        self.num_replicas = num_replicas
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.target_ongoing_requests = target_ongoing_requests
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.memory_gb = memory_gb
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s
        self.request_timeout_s = request_timeout_s
        self.extra: dict[str, Any] = dict(extra)

    def to_dict(self) -> dict[str, Any]:
        """The keys that were given a value (never None), known keys only."""
        values = {key: getattr(self, key) for key in SERVE_CONFIG_KEYS}
        return {key: value for key, value in values.items() if value is not None}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"ServeDeploymentConfig({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServeDeploymentConfig):
            return NotImplemented
        return self.to_dict() == other.to_dict() and self.extra == other.extra


def _unimplemented(method: Any) -> Any:
    """Mark a base method as a forwarder: the loader never picks it as a service's handler."""
    method.__plughost_unimplemented__ = True
    return method


class BaseInferenceService:
    """Base of a plugin's realtime service.

    Construction takes no argument; keyword arguments given anyway are kept in
    ``self.config``. ``self.logger`` is a standard logger (named after the class) whose
    records reach stderr, which plughost keeps as the replica's output. ``health()`` answers
    True unless overridden.
    """

    serve_config: ClassVar[ServeDeploymentConfig | None] = None

    def __init__(self, **kwargs: Any) -> None:
        self.config: dict[str, Any] = dict(kwargs)
        self.logger: logging.Logger = get_logger(f"plugin.{type(self).__qualname__}")

    def _implemented(self, name: str) -> bool:
        """Whether a subclass (not this base class) defines method ``name``."""
        for klass in type(self).__mro__:
            if klass is BaseInferenceService:
                return False
            if name in vars(klass):
                return True
        return False

    @_unimplemented
    def run_inference(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        """Forward to the subclass's ``_process_single`` or ``__call__``.

        The result is an awaitable when that method is ``async``. Raises NotImplementedError
        when the subclass implements none of the three methods.
        """
        if self._implemented("_process_single"):
            return self._process_single(inputs, parameters)
        if self._implemented("__call__"):
            return self(inputs, parameters)
        raise NotImplementedError(
            f"{type(self).__name__} must implement run_inference(inputs, parameters), "
            "_process_single(inputs, parameters) or __call__(inputs, parameters)"
        )

    @_unimplemented
    def __call__(self, inputs: dict[str, Any], parameters: dict[str, Any] | None = None) -> Any:
        """Forward to ``run_inference`` (the subclass's, or the base's forwarding one)."""
        if not self._implemented("run_inference") and self._implemented("_process_single"):
            return self._process_single(inputs, parameters or {})
        return self.run_inference(inputs, parameters or {})

    def _process_single(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        """One request, Mixpeek's template style; subclasses override it (or run_inference)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _process_single")

    def health(self) -> bool:
        """Whether the service can answer requests."""
        return True
