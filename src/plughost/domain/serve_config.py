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
)
"""Every key plughost reads from a serve_config, in the order of ServeDeploymentConfig's
parameters; any other key is ignored."""
