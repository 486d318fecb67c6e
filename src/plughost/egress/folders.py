"""Where the egress proxy's sockets live, and which plugin folder (a release's or a batch
job's) a socket serves."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def caller_of(plugin_dir: Path) -> str:
    """The label of a sandbox's plugin folder in the proxy's log: ``r<release id>`` for a
    replica (``deployments/r<id>``), the job folder's name for a batch worker."""
    return plugin_dir.name if is_release(plugin_dir.name) else plugin_dir.parent.name


def is_release(caller: str) -> bool:
    """Whether a caller label is a release's (``r<id>``), not a batch job's."""
    return caller[:1] == "r" and caller[1:].isdigit()


def egress_root(home: Path) -> Path:
    """A short folder for the proxy's sockets (Unix socket paths are limited to ~107 bytes),
    the same for every server on ``home`` (a later one restores them)."""
    tag = hashlib.sha256(str(home).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"plughost-egress-{os.getuid()}-{tag}"
