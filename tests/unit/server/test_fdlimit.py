"""The server raises its soft open-file limit so PLUGHOST_STREAMS_MAX_OPEN streams fit."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator

import pytest

from plughost.server.fdlimit import MARGIN, raise_open_file_limit

pytestmark = pytest.mark.unit


@pytest.fixture
def limits() -> Iterator[tuple[int, int]]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield before
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_a_low_soft_limit_is_raised_to_hold_the_streams(limits: tuple[int, int]) -> None:
    _, hard = limits
    if hard != resource.RLIM_INFINITY and hard < 1000 + MARGIN:
        pytest.skip(f"the hard limit here ({hard}) is below what the test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    assert raise_open_file_limit(1000) == 1000 + MARGIN
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (1000 + MARGIN, hard)


def test_a_soft_limit_already_high_enough_is_not_lowered(limits: tuple[int, int]) -> None:
    _, hard = limits
    if hard != resource.RLIM_INFINITY and hard < 4000:
        pytest.skip(f"the hard limit here ({hard}) is below what the test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (4000, hard))
    assert raise_open_file_limit(10) == 4000
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 4000


def test_the_soft_limit_stops_at_the_hard_one() -> None:
    # a lowered hard limit cannot be raised again without CAP_SYS_RESOURCE: in a child
    code = (
        "import resource\n"
        "from plughost.server.fdlimit import raise_open_file_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (512, 2048))\n"
        "print(raise_open_file_limit(100_000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2048", "2048"]
    assert "lower than PLUGHOST_STREAMS_MAX_OPEN" in done.stderr
