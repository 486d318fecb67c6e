from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ray_support import RAY_AVAILABLE, RAY_SKIP_REASON, RayHead


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Ray head for the whole session (servers that join a cluster); its address."""
    if not RAY_AVAILABLE:
        pytest.skip(RAY_SKIP_REASON)
    head = RayHead(tmp_path_factory.mktemp("ray-head") / "head.log").start()
    try:
        yield head.address
    finally:
        head.stop()
