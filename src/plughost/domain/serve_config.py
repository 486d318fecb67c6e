"""The keys of a plugin's ``serve_config``: how a realtime service wants to be deployed.

One definition for every reader: the runtime class plugins build it with
(``shared.plugins.inference.serve.ServeDeploymentConfig``, whose parameters are these keys)
and the static reader of a service class's ``serve_config`` at validation
(:mod:`plughost.archive._serve_config`, which also runs in the manifest child). Both import
this module in processes that run the server's own interpreter, so it stays standard
library only and imports nothing else of plughost.
"""

from __future__ import annotations

SERVE_CONFIG_KEYS: tuple[str, ...] = (
    "enabled",
    "num_replicas",
    "min_replicas",
    "max_replicas",
    "target_ongoing_requests",
    "num_cpus",
    "num_gpus",
    "memory_gb",
    "max_batch_size",
    "batch_wait_timeout_s",
    "request_timeout_s",
)
"""Every key plughost reads from a serve_config, in the order of ServeDeploymentConfig's
parameters; any other key is ignored."""

MAX_BATCH_SIZE = 256
MAX_BATCH_WAIT_S = 1.0
DEFAULT_BATCH_WAIT_S = 0.01
DEFAULT_REQUEST_TIMEOUT_S = 60.0
MAX_REQUEST_TIMEOUT_S = 3600.0


_INF = float("inf")


def _number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool)
        and -_INF < value < _INF  # not NaN (every comparison with NaN is false), not infinite
    )


def serving_errors(serve_config: dict[str, object]) -> list[str]:
    """What is wrong with the serving keys of a serve_config (batching, deadline): an
    empty list when they are absent or in range."""
    errors: list[str] = []
    size = serve_config.get("max_batch_size")
    if size is not None and (
        not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_BATCH_SIZE
    ):
        errors.append(f"serve_config.max_batch_size must be a whole number from 1 to "
                      f"{MAX_BATCH_SIZE}, not {size!r}")
    wait = serve_config.get("batch_wait_timeout_s")
    if wait is not None and (not _number(wait) or not 0 <= float(wait) <= MAX_BATCH_WAIT_S):  # type: ignore[arg-type]
        errors.append(f"serve_config.batch_wait_timeout_s must be a number of seconds from 0 "
                      f"to {MAX_BATCH_WAIT_S:g}, not {wait!r}")
    timeout = serve_config.get("request_timeout_s")
    if timeout is not None and (
        not _number(timeout) or not 0 < float(timeout) <= MAX_REQUEST_TIMEOUT_S  # type: ignore[arg-type]
    ):
        errors.append(f"serve_config.request_timeout_s must be a number of seconds above 0 and "
                      f"at most {MAX_REQUEST_TIMEOUT_S:g}, not {timeout!r}")
    return errors


def serving_option(serve_config: dict[str, object]) -> str | None:
    """The replica's ``--serving`` JSON: micro-batching when the serve_config asks for batches
    above one call, and the release's request deadline when it sets one (the replica applies
    it to calls that reach it without a lower one); None when neither."""
    parts: list[str] = []
    size = serve_config.get("max_batch_size")
    if isinstance(size, int) and not isinstance(size, bool) and size > 1:
        wait = serve_config.get("batch_wait_timeout_s")
        wait_s = float(wait) if _number(wait) else DEFAULT_BATCH_WAIT_S  # type: ignore[arg-type]
        parts.append(f'"max_batch_size":{min(size, MAX_BATCH_SIZE)},"batch_wait_timeout_s":{wait_s!r}')
    timeout = serve_config.get("request_timeout_s")
    if _number(timeout) and float(timeout) > 0:  # type: ignore[arg-type]
        parts.append(f'"request_timeout_s":{float(timeout)!r}')  # type: ignore[arg-type]
    return "{" + ",".join(parts) + "}" if parts else None


def request_timeout_of(serve_config: dict[str, object], default: float) -> float:
    """The release's request deadline in seconds: serve_config.request_timeout_s, else
    ``default``."""
    value = serve_config.get("request_timeout_s")
    if _number(value) and float(value) > 0:  # type: ignore[arg-type]
        return float(value)  # type: ignore[arg-type]
    return default
