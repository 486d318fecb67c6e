"""Fixtures of the security suite: two strict-mode servers on SQLite (one with the upload scanner
bypassed, so payloads reach the sandbox), host listeners, a neighbour plugin on each server
(tests/security/sec_servers.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sec_servers import Target, deploy_neighbour, start_server
from sec_support import Listeners


@pytest.fixture(scope="session")
def marker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("markers")
    os.chmod(folder, 0o777)  # writable by any uid: only the sandbox can keep plugins out
    return folder


@pytest.fixture(scope="session")
def listeners(marker_dir: Path) -> Iterator[Listeners]:
    lst = Listeners(marker_dir)
    yield lst
    lst.close()


def _target(home: Path, skip_scan: bool) -> Iterator[Target]:
    srv = start_server(home, skip_scan)
    try:
        sandbox = httpx.get(f"{srv.url}/healthz", timeout=10).json()["sandbox"]
        # strict mode already refuses to start otherwise; never run these payloads uncontained
        assert all(sandbox["layers"].values()), sandbox
        yield Target(srv, deploy_neighbour(srv))
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def unscanned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A server that skips the upload scanner: every payload reaches a sandboxed process."""
    yield from _target(tmp_path_factory.mktemp("sec-unscanned"), skip_scan=True)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A server with the scanner on, as in production."""
    yield from _target(tmp_path_factory.mktemp("sec-scanned"), skip_scan=False)


