"""The Serve deployment class, driven directly (no Ray): same loading rules and replies as a
local replica."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from plughost.backends.ray.replica import PluginReplica, PluginStartError

SERVICE = """
from shared.plugins.inference.serve import BaseInferenceService
from .helpers import shout


class Service(BaseInferenceService):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if kwargs.get("fail"):
            raise RuntimeError("model weights missing")

    async def run_inference(self, inputs, parameters):
        if inputs.get("boom"):
            raise ValueError("plugin says boom")
        if inputs.get("unjson"):
            return {"x": object()}
        return {"text": shout(inputs.get("text", "")), "home": __import__("os").environ["HOME"]}
"""


@pytest.fixture
def plugin_cwd(tmp_path: Path) -> Iterator[Path]:
    """A plugin folder as the working directory (as Ray unpacks it), imports undone after."""
    (tmp_path / "realtime.py").write_text(textwrap.dedent(SERVICE))
    (tmp_path / "helpers.py").write_text("def shout(t):\n    return t.upper()\n")
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    saved_cwd, saved_home = Path.cwd(), os.environ.get("HOME")
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(saved_cwd)
        if saved_home is not None:
            os.environ["HOME"] = saved_home
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            module_file = str(getattr(sys.modules[name], "__file__", "") or "")
            # only the plugin's own modules (a third-party module cannot be loaded twice)
            if name.split(".")[0] in ("plughost_plugin", "shared") or module_file.startswith(
                str(tmp_path)
            ):
                del sys.modules[name]
        importlib.invalidate_caches()


def call(replica: PluginReplica, body: bytes) -> tuple[object, ...]:
    return asyncio.run(replica(body))


def test_calls_answer_json_bytes_or_the_plugins_error(plugin_cwd: Path) -> None:
    replica = PluginReplica({}, ())
    ok = call(replica, b'{"inputs": {"text": "hi"}}')
    assert ok[0] is True
    assert orjson.loads(ok[1]) == {"text": "HI", "home": str(plugin_cwd)}  # type: ignore[arg-type]
    assert call(replica, b'{"inputs": {"boom": 1}}') == (False, "ValueError", "plugin says boom")
    bad = call(replica, b'{"inputs": {"unjson": 1}}')
    assert bad[0] is False and bad[1] == "ResultEncodingError"
    assert call(replica, b"[1]")[:2] == (False, "ValidationError")
    assert call(replica, b'{"inputs": [1]}') == (
        False,
        "ValidationError",
        "inputs must be a JSON object",
    )
    assert asyncio.run(replica.health()) is True


def test_constructor_failure_carries_the_plugins_message(plugin_cwd: Path) -> None:
    with pytest.raises(PluginStartError, match=r"^RuntimeError: model weights missing$"):
        PluginReplica({"fail": True}, ())


@pytest.fixture
def worker_mode(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """What the backend passes for a sandboxed worker; this test process is neither hardened
    (its environment scrubbed) nor ended with the worker, as a Ray replica's would be."""
    import functools

    from plughost.backends.ray import replica as ray_replica
    from plughost.backends.ray import worker as ray_worker
    from plughost.backends.ray.node import WorkerConfig, sandbox_fields
    from plughost.sandbox.policy import SandboxConfig

    monkeypatch.setattr(ray_replica, "harden_worker_process", lambda force=False: None)
    monkeypatch.setattr(
        ray_worker, "WorkerHost", functools.partial(ray_worker.WorkerHost, exit_with_worker=False)
    )
    return dict(WorkerConfig(sandbox=sandbox_fields(SandboxConfig(mode="auto"))).__dict__)


def test_the_worker_starts_beside_serves_steps_and_its_first_health_check_waits(
    plugin_cwd: Path, worker_mode: dict[str, object]
) -> None:
    replica = PluginReplica({}, (), worker_mode)
    try:
        asyncio.run(replica.check_health())  # Serve's first check: waits for the start
        ok = call(replica, b'{"inputs": {"text": "hi"}}')
        assert ok[0] is True and orjson.loads(ok[1])["text"] == "HI"  # type: ignore[arg-type]
    finally:
        replica._release()


def test_a_worker_that_cannot_start_fails_serves_first_health_check_with_its_message(
    plugin_cwd: Path, worker_mode: dict[str, object]
) -> None:
    replica = PluginReplica({"fail": True}, (), worker_mode)  # returns: the start runs aside
    with pytest.raises(PluginStartError, match="model weights missing"):
        asyncio.run(replica.check_health())
    with pytest.raises(PluginStartError, match="model weights missing"):
        call(replica, b'{"inputs": {"text": "hi"}}')


def test_missing_dependencies_fail_like_a_local_replica(plugin_cwd: Path) -> None:
    with pytest.raises(PluginStartError, match="missing dependencies .*no_such_dist_xyz"):
        PluginReplica({}, ("no_such_dist_xyz>=1",))


def test_hardening_scrubs_the_environment_only_when_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    from plughost.backends.ray import replica as ray_replica

    applied: list[dict[str, int]] = []
    monkeypatch.setattr(ray_replica, "set_rlimits", lambda limits: applied.append(limits) or True)
    monkeypatch.setenv("PLUGHOST_DATABASE_URL", "postgresql://secret")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    ray_replica.harden_worker_process()  # not flagged: a plain import must not scrub
    assert os.environ["PLUGHOST_DATABASE_URL"] == "postgresql://secret" and applied == []

    saved = dict(os.environ)
    try:
        os.environ[ray_replica.HARDEN_FLAG] = "1"
        ray_replica.harden_worker_process()
        assert "PLUGHOST_DATABASE_URL" not in os.environ
        assert ray_replica.HARDEN_FLAG not in os.environ
        assert os.environ["RAY_ADDRESS"] == "127.0.0.1:6379" and "PATH" in os.environ
        assert applied == [ray_replica.RAY_RLIMITS]
    finally:
        os.environ.clear()
        os.environ.update(saved)
