"""What a warm spare imports ahead of its byte (issue 17, plughost.replica.preload): learned
from a replica's load (the plugin's dependencies, never its own files), applied with the
handshake's channel kept clean, and in the spare only once inside the sandbox layers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from plughost.replica import spare
from plughost.replica.loader import PLUGIN_PACKAGE, load_plugin
from plughost.replica.preload import MAX_ENV, MAX_MODULES, apply, clean, learn
from plughost.runtime_api import RUNTIME_API_DIR

REALTIME = """
import os
os.environ["PRELOAD_TEST_FLAG"] = "on"
os.environ["PRELOAD_TEST_API_KEY"] = "a credential: never on a command line"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import colorsys  # a dependency (stdlib here): learned
import helper_of_the_plugin  # the plugin's own top-level module: never learned

class Service:
    def run_inference(self, inputs, parameters):
        return {}

def get_inference_service(**kwargs):
    return Service()
"""


@pytest.fixture
def clean_modules() -> Any:
    """Unload what a test's plugin imported (and its flag), so the next test sees it new."""
    before = set(sys.modules)
    env = dict(os.environ)
    saved_path = list(sys.path)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]
    os.environ.clear()
    os.environ.update(env)
    sys.path[:] = saved_path


def test_a_load_teaches_its_dependencies_and_env_but_not_the_plugins_own_modules(
    tmp_path: Path, clean_modules: None
) -> None:
    sys.modules.pop("colorsys", None)
    (tmp_path / "realtime.py").write_text(REALTIME)
    (tmp_path / "helper_of_the_plugin.py").write_text("VALUE = 1\n")
    before, env = set(sys.modules), dict(os.environ)
    load_plugin(tmp_path, {})
    learned = learn(before, env, (tmp_path, RUNTIME_API_DIR), (PLUGIN_PACKAGE,))
    assert "colorsys" in learned["modules"]
    assert "helper_of_the_plugin" not in learned["modules"]  # under the plugin folder
    assert not [m for m in learned["modules"] if m.startswith(PLUGIN_PACKAGE)]
    assert not {"shared", "engine"} & set(learned["modules"])  # the runtime API
    # a credential-like name is left out (the spare's command line is public on the host);
    # a word that merely starts like one is not
    assert learned["env"] == {"PRELOAD_TEST_FLAG": "on", "TOKENIZERS_PARALLELISM": "false"}
    assert len(orjson.dumps(learned)) < 16_000  # it rides in the handshake and argv


def test_applying_sets_the_env_imports_the_modules_and_keeps_fd1_clean(
    tmp_path: Path, clean_modules: None
) -> None:
    (tmp_path / "noisy_dependency.py").write_text("print('import-time noise')\n")
    sys.path.insert(0, str(tmp_path))
    failed = apply({
        "modules": ["noisy_dependency", "no_such_module_here", "os.path", "bad name", 3],
        "env": {"PRELOAD_TEST_FLAG": "set", "BAD=KEY": "x", "N": 1},
    })
    assert "noisy_dependency" in sys.modules
    assert failed == ["no_such_module_here"]  # not identifiers are not even tried
    assert os.environ["PRELOAD_TEST_FLAG"] == "set" and "BAD=KEY" not in os.environ
    assert apply(None) == [] and apply({"modules": "os"}) == []
    # in a process of its own (fd 1 is the handshake's channel there): the noise goes to
    # stderr, and what the process prints after the preload reaches stdout again
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from plughost.replica.preload import apply; "
        "apply({'modules': ['noisy_dependency']}); print('handshake')"
    )
    sys.modules.pop("noisy_dependency", None)
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout == "handshake\n" and "import-time noise" in out.stderr


def test_the_list_is_bounded(clean_modules: None) -> None:
    fake = [f"fake_dep_{i}" for i in range(MAX_MODULES + 50)]
    for name in fake:
        sys.modules[name] = type(sys)(name)
    assert len(learn(set(), dict(os.environ), ())["modules"]) == MAX_MODULES


def test_the_spare_enters_the_sandbox_then_preloads_and_checks_then_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Order and arguments: the layers before any learned import; the worker gets neither
    --sandbox (entered once) nor --requirements (checked) nor the spare's own flags."""
    calls: list[Any] = []
    import plughost.replica.main as worker_main
    from plughost.replica import preload
    from plughost.sandbox import runner

    monkeypatch.setattr(preload, "_baseline", None)  # the spare marks it: undone after
    monkeypatch.setattr(runner, "enter", lambda policy: calls.append("enter"))
    monkeypatch.setattr(preload, "apply", lambda learned: calls.append(("apply", learned)))
    monkeypatch.setattr(
        worker_main, "check_requirements", lambda text, folder: calls.append(("check", text))
    )
    monkeypatch.setattr(spare, "wait_for_go", lambda fd: calls.append("wait") or True)
    monkeypatch.setattr(worker_main, "main", lambda args: calls.append(("worker", args)) or 0)
    policy = '{"uid": null, "gid": null, "rlimits": {}, "seccomp": false, "allow_inet": false}'
    argv = [
        "--socket", "/s", "--plugin-dir", "/plugin", "--hold-fd", "9",
        "--preload", '{"modules": ["colorsys"], "env": {}}', "--sandbox", policy,
        "--env-path", "/env-for-test", "--requirements", '["x"]',
    ]
    assert spare.main(argv) == 0
    assert calls[:4] == [
        "enter", ("apply", {"modules": ["colorsys"], "env": {}}), ("check", '["x"]'), "wait"
    ]
    assert calls[4] == (
        "worker", ["--socket", "/s", "--plugin-dir", "/plugin", "--env-path", "/env-for-test"]
    )
    assert "/env-for-test" in sys.path
    sys.path.remove("/env-for-test")


def test_a_failed_early_check_is_left_to_the_worker() -> None:
    args = ["--plugin-dir", "/p", "--requirements", '["surely-not-installed-dist-xyz"]']
    spare.check_early(args)
    assert "--requirements" in args  # the worker fails the start with its message


def test_without_preload_the_spare_enters_nothing_before_its_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    import plughost.replica.main as worker_main
    from plughost.sandbox import runner

    monkeypatch.setattr(runner, "enter", lambda policy: calls.append("enter"))
    monkeypatch.setattr(spare, "wait_for_go", lambda fd: calls.append("wait") or True)
    monkeypatch.setattr(worker_main, "main", lambda args: calls.append(("worker", args)) or 0)
    assert spare.main(["--socket", "/s", "--hold-fd", "9", "--sandbox", "{}"]) == 0
    assert calls == ["wait", ("worker", ["--socket", "/s", "--sandbox", "{}"])]


def test_a_replica_started_from_a_spare_passes_the_whole_list_on(
    tmp_path: Path, clean_modules: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Learned against the spare's state before its preload: what the spare imported is
    still in the list (against the state after it, the list would be empty and the next
    spare would import nothing)."""
    from plughost.replica import preload

    monkeypatch.setattr(preload, "_baseline", None)
    sys.modules.pop("colorsys", None)
    preload.mark_baseline()
    apply({"modules": ["colorsys"], "env": {"PRELOAD_TEST_FLAG": "on"}})
    (tmp_path / "realtime.py").write_text(REALTIME)
    (tmp_path / "helper_of_the_plugin.py").write_text("VALUE = 1\n")
    load_plugin(tmp_path, {})
    before, env = preload.baseline()
    learned = learn(before, env, (tmp_path, RUNTIME_API_DIR), (PLUGIN_PACKAGE,))
    assert "colorsys" in learned["modules"] and learned["env"]["PRELOAD_TEST_FLAG"] == "on"


def test_what_the_server_keeps_of_a_report_is_names_and_string_variables() -> None:
    """A replica can report anything (its plugin runs in it): only identifiers and string
    variables are kept, bounded, and a report with nothing usable is dropped."""
    report = {
        "modules": ["torch", "os.path", "a b", "--flag", 7, "__main__", "numpy"],
        "env": {"HF_HUB_OFFLINE": "1", "A=B": "x", "NUL": "a\0b", "N": 3, "": "x",
                "HF_TOKEN": "hf_x", "openai_api_key": "sk-x", "DB_PASSWORD": "p"},
        "extra": "ignored",
    }
    assert clean(report) == {"modules": ["torch", "numpy"], "env": {"HF_HUB_OFFLINE": "1"}}
    assert clean({"modules": "torch", "env": []}) is None
    assert clean(None) is None and clean([]) is None
    many = {"modules": [f"m{i}" for i in range(MAX_MODULES + 9)],
            "env": {f"V{i}": "x" for i in range(MAX_ENV + 9)}}
    kept = clean(many)
    assert kept is not None
    assert len(kept["modules"]) == MAX_MODULES and len(kept["env"]) == MAX_ENV
