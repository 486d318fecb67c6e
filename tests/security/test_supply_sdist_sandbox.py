"""Source distributions with PLUGHOST_PLUGIN_ONLY_BINARY off: the real uv builds them from a
package index in a folder of this test, inside bubblewrap. The sdist's build script tries to
write a marker beside the test, one in the server's home and one in its own home folder:
none appears outside the build (the first two are not even visible to it), and the package is
installed all the same; with a file index it cannot open a connection either. Without
bubblewrap such a build is refused, never run bare."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from supply_support import local_index, sdist_with_build_script, wheel

from plughost.config import Settings
from plughost.envs import EnvBuilder, EnvBuildFailed

PROBE = "plughost-sdist-probe"

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback port the build script tries to connect to."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


@pytest.fixture
def index(tmp_path: Path, listener: int) -> tuple[str, list[Path]]:
    markers = [tmp_path / "outside-marker", tmp_path / "home" / "planted-by-build-script"]
    sdist = sdist_with_build_script(PROBE, *markers, port=listener)
    url = local_index(
        tmp_path / "index",
        {
            PROBE: {"plughost_sdist_probe-1.0.tar.gz": sdist},
            "numpyy": {"numpyy-1.0-py3-none-any.whl": wheel("numpyy")},
        },
    )
    return url, markers


def _builder(tmp_path: Path, url: str, **settings: object) -> EnvBuilder:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return EnvBuilder.from_settings(
        Settings(home=home, plugin_index_url=url, plugin_build_timeout_s=300, **settings)
    )


def test_the_setting_decides_between_wheels_only_and_sandboxed_builds(tmp_path: Path) -> None:
    default = _builder(tmp_path, "")
    assert not default.build_sdists and "--no-build" in default._uv_argv("compile", ())
    off = _builder(tmp_path, "", plugin_only_binary=False)
    assert off.build_sdists and "--no-build" not in off._uv_argv("compile", ())


def test_an_sdist_is_built_inside_the_sandbox_and_its_script_writes_nothing_outside(
    tmp_path: Path, index: tuple[str, list[Path]]
) -> None:
    url, markers = index
    builder = _builder(tmp_path, url, plugin_only_binary=False)
    plan = builder.plan((PROBE, "numpyy"))
    assert plan is not None
    site = asyncio.run(builder.ensure(plan))
    built = (site / "plughost_sdist_probe" / "__init__.py").read_text()
    assert built.startswith("VALUE = 'built from source'")
    assert "NET = 'blocked'" in built  # a file index: the build got no network at all
    assert (site / "numpyy" / "__init__.py").is_file()
    for marker in markers:
        assert not marker.exists(), marker
    home = tmp_path / "home"
    assert not list(home.rglob("ran-build-script"))  # its home was the build's scratch
    assert not list(home.rglob(".uv-cache")) and not list(home.rglob(".tmp"))
    assert not list((home / "uv-cache").rglob("*plughost_sdist_probe*"))  # shared cache untouched


def test_with_the_default_the_sdist_is_refused_and_its_script_never_runs(
    tmp_path: Path, index: tuple[str, list[Path]]
) -> None:
    url, markers = index
    builder = _builder(tmp_path, url)
    plan = builder.plan((PROBE,))
    assert plan is not None
    with pytest.raises(EnvBuildFailed, match=f"refused: {PROBE} exists only as a source"):
        asyncio.run(builder.ensure(plan))
    assert not any(m.exists() for m in markers)


def test_without_bubblewrap_an_sdist_build_is_refused(
    tmp_path: Path, index: tuple[str, list[Path]]
) -> None:
    url, markers = index
    builder = _builder(tmp_path, url, plugin_only_binary=False, sandbox_bwrap="no-such-bwrap")
    plan = builder.plan((PROBE,))
    assert plan is not None
    with pytest.raises(EnvBuildFailed, match="needs bubblewrap"):
        asyncio.run(builder.ensure(plan))
    assert not any(m.exists() for m in markers)
