"""The author's command line against a live server, as an author uses it: `init` -> `check`
-> `test` -> `push --deploy --wait` -> `infer` -> `logs` -> `history` -> `rollback`, each
output and exit code checked (``--json`` outputs parsed); a plugin whose constructor raises
makes `push --wait` fail with the plugin's error; a scanner finding fails `check` naming
file:line."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import LiveServer, unique_name

PLUGHOST = str(Path(sys.executable).parent / "plughost")
NS = "ns_default"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(home=tmp_path_factory.mktemp("author-cli")).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def cli(server: LiveServer, tmp_path: Path) -> Any:
    """Run `plughost ...` in ``tmp_path`` with the server in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
    env.update(
        PLUGHOST_URL=server.url,
        PLUGHOST_API_KEY=server.key,
        PLUGHOST_HOME=str(tmp_path / "home"),
        COLUMNS="200",
    )

    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PLUGHOST, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    run.env = env  # type: ignore[attr-defined]
    return run


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result).stdout)


def break_constructor(folder: Path, message: str) -> None:
    realtime = folder / "realtime.py"
    source = realtime.read_text()
    marker = 'service loaded")'
    assert marker in source
    realtime.write_text(
        source.replace(
            marker,
            marker + f"\n        print('about to fail')\n        raise RuntimeError({message!r})",
        )
    )


@pytest.mark.slow
@pytest.mark.timeout(900)  # some 25 CLI runs, each a fresh interpreter: slow on a busy machine
def test_the_authors_loop(cli: Any, tmp_path: Path, server: LiveServer) -> None:
    name = unique_name("loop")
    created = as_json(cli("init", name, "--json"))
    assert {
        "manifest.py",
        "pipeline.py",
        "realtime.py",
        "processors/text.py",
        "tests/test_plugin.py",
        "README.md",
    } <= set(created["files"])
    folder = tmp_path / name

    assert f"passed {name} 1.0.0, with realtime.py" in ok(cli("check", name)).stdout
    assert as_json(cli("check", name, "--json"))["passed"] is True

    local = as_json(cli("test", name, "--input", '{"text": "a b c"}', "--json"))
    assert local["result"]["tokens"] == 3 and len(local["result"]["embedding"]) == 8
    assert local["call_ms"] > 0
    assert "answered in" in ok(cli("test", name)).stdout  # example_input by default

    pushed = ok(cli("push", name, "--deploy", "--wait"))
    route = f"/inference/{NS}/custom_plugin_{name}_1_0_0"
    assert f"deployed {name}_1_0_0 at {route}" in pushed.stdout
    assert "in_progress" in pushed.stderr and "deployed" in pushed.stderr
    curl = next(line for line in pushed.stdout.splitlines() if line.startswith("curl "))
    called = subprocess.run(
        ["bash", "-c", curl], env=cli.env, capture_output=True, text=True, timeout=30, check=True
    )
    assert json.loads(called.stdout)["tokens"] == 2  # example_input: "hello world"

    answer = as_json(cli("infer", name, "--input", '{"text": "one two three four"}', "--json"))
    assert answer["tokens"] == 4
    assert "answered in" in ok(cli("infer", name, "--input", '{"text": "x"}')).stdout

    logs_kept = check_logs(cli, name)

    second = as_json(cli("push", str(folder), "--version", "1.1.0", "--wait", "--json"))
    assert second["upload"]["plugin_id"] == f"{name}_1_1_0"
    assert second["status"]["status"] == "deployed"

    history = as_json(cli("history", name, "--json"))  # the name: its newest version
    assert history["plugin_id"] == f"{name}_1_1_0"
    release = history["deployments"][0]
    assert release["outcome"] == "deployed"
    assert [e["to"] for e in release["events"]][-1] == "deployed"
    assert history["alias"]["version"] == "1.1.0"
    shown = ok(cli("history", name)).stdout
    assert "-> deployed" in shown and f"alias {name} -> v1.1.0" in shown

    rolled = as_json(cli("rollback", name, "1.0.0", "--json"))
    assert rolled["active_version"] == "1.0.0" and rolled["previous_version"] == "1.1.0"
    after = as_json(cli("history", name, "--json"))
    assert after["alias"]["version"] == "1.0.0"
    assert after["alias_moves"][0]["reason"] == "rollback"
    assert "alias moved from 1.0.0 to 1.0.0" in ok(cli("rollback", name, "1.0.0")).stdout

    listed = {p["plugin_id"]: p for p in as_json(cli("list", "--json"))}
    assert listed[f"{name}_1_0_0"]["deployed"] and listed[f"{name}_1_1_0"]["deployed"]
    assert as_json(cli("status", f"{name}_1_0_0", "--watch", "--json"))["status"] == "deployed"
    assert as_json(cli("undeploy", f"{name}_1_1_0", "--json"))["success"] is True
    assert as_json(cli("delete", f"{name}_1_1_0", "--json"))["success"] is True
    gone = cli("status", f"{name}_1_1_0")
    assert gone.returncode == 1 and f"'{name}_1_1_0'" in gone.stderr
    if not logs_kept:
        pytest.xfail("the server keeps no replica output yet (logs answered no lines)")


def check_logs(cli: Any, name: str) -> bool:
    """The replica's `self.logger` line at start-up comes back through `logs`; False when
    the server answered no lines at all (its log capture is not in place)."""
    deadline = time.monotonic() + 10
    while True:
        page = as_json(cli("logs", name, "--json"))
        texts = [line["line"] for line in page["lines"]]
        if any(f"{name} service loaded" in t for t in texts) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if not page["lines"]:
        return False
    assert any(f"{name} service loaded" in t for t in texts), texts
    assert all(line["replica"] and line["stream"] for line in page["lines"])
    assert f"{name} service loaded" in ok(cli("logs", name, "--since", "1h")).stdout
    followed = first_followed_line(cli, name)
    assert followed["replica"] and "line" in followed
    return True


def first_followed_line(cli: Any, name: str) -> dict[str, Any]:
    """The first line `logs --follow --json` prints (the stream never ends on its own)."""
    proc = subprocess.Popen(
        [PLUGHOST, "logs", name, "--follow", "--json"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "logs --follow printed nothing within 60 s"
        assert proc.stdout is not None
        return dict(json.loads(proc.stdout.readline()))
    finally:
        proc.terminate()
        proc.wait(10)


def test_pydantic_style_checks_tests_and_deploys(cli: Any) -> None:
    name = unique_name("pyd")
    ok(cli("init", name, "--style", "pydantic"))
    assert f"passed {name} 1.0.0" in ok(cli("check", name)).stdout
    assert as_json(cli("test", name, "--json"))["result"]["tokens"] == 2
    final = as_json(cli("push", name, "--deploy", "--wait", "--json"))["status"]
    assert final["status"] == "deployed"


def test_broken_constructor_fails_push_wait_with_the_plugins_error(
    cli: Any, tmp_path: Path
) -> None:
    name = unique_name("broken")
    ok(cli("init", name))
    break_constructor(tmp_path / name, "model weights missing: cannot start")
    ok(cli("check", name))  # a constructor is not validation's business

    local = cli("test", name)
    assert local.returncode == 1
    assert "RuntimeError: model weights missing: cannot start" in local.stderr
    assert "about to fail" in local.stderr  # the replica's last output

    pushed = cli("push", name, "--deploy", "--wait")
    assert pushed.returncode == 1
    assert f"{name}_1_0_0 failed" in pushed.stderr
    assert "RuntimeError: model weights missing: cannot start" in pushed.stderr
    assert "about to fail" in pushed.stderr  # the plugin's last log lines

    scripted = cli("push", name, "--version", "1.0.1", "--wait", "--json")
    assert scripted.returncode == 1
    body = json.loads(scripted.stdout)
    assert body["status"] == "failed" and "model weights missing" in body["error"]


def test_check_names_file_and_line_of_a_scanner_finding(cli: Any, tmp_path: Path) -> None:
    name = unique_name("scan")
    ok(cli("init", name))
    (tmp_path / name / "processors" / "bad.py").write_text(
        '"""bad"""\n\nimport subprocess\n\n\ndef run():\n    return eval("1")\n'
    )
    checked = cli("check", name)
    assert checked.returncode == 1
    assert "processors/bad.py:3:8 import of 'subprocess' is not allowed" in checked.stderr
    assert "processors/bad.py:7:12 call to 'eval' is not allowed" in checked.stderr
    body = json.loads(cli("check", name, "--json").stdout)
    assert body["passed"] is False and len(body["errors"]) == 2

    refused = cli("push", name)  # refused locally, before any upload
    assert refused.returncode == 1 and "processors/bad.py:3:8" in refused.stderr
    assert name not in {p["name"] for p in as_json(cli("list", "--json"))}


def test_bad_inputs_exit_non_zero_with_a_message(cli: Any) -> None:
    bad = cli("infer", "no_such_plugin", "--input", "{}")
    assert bad.returncode == 1 and "'no_such_plugin'" in bad.stderr
    not_json = cli("infer", "x", "--input", "{nope")
    assert not_json.returncode == 1 and "--input is not valid JSON" in not_json.stderr
    missing = cli("check", "no_such_folder")
    assert missing.returncode == 1 and "no_such_folder is not a folder" in missing.stderr
    rollback = cli("rollback", "no_such_plugin", "1.0.0")
    assert rollback.returncode == 1 and "NotFoundError" in rollback.stderr
