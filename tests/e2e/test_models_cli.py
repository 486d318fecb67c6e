"""`plughost models upload/list/deploy/delete` against a live server, as an operator uses them:
a folder packed and uploaded, a .tar.gz uploaded with a preload, each listing and exit code
checked (``--json`` outputs parsed), the server's refusals (a wrong format, a model still
used by a deployed plugin, an unknown id) printed with exit 1, and no key at all exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deploy_support import NS, deploy, upload, wait_for
from model_support import onnx_bytes, safetensors_bytes
from support import PIPELINE, LiveServer, tar_gz_bytes, unique_name, zip_bytes

PLUGHOST = str(Path(sys.executable).parent / "plughost")


@pytest.fixture
def cli(server: LiveServer, tmp_path: Path) -> Any:
    """Run `plughost models ...` in ``tmp_path`` with the server in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
    env.update(
        PLUGHOST_URL=server.url,
        PLUGHOST_API_KEY=server.key,
        PLUGHOST_HOME=str(tmp_path / "home"),
        COLUMNS="200",
    )

    def run(*args: str, key: bool = True) -> subprocess.CompletedProcess[str]:
        run_env = dict(env) if key else {k: v for k, v in env.items() if k != "PLUGHOST_API_KEY"}
        return subprocess.run(
            [PLUGHOST, "models", *args],
            cwd=tmp_path,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result).stdout)


def listed(cli: Any) -> dict[str, dict[str, Any]]:
    return {m["model_id"]: m for m in as_json(cli("list", "--json"))["models"]}


def test_upload_a_folder_list_and_delete(cli: Any, tmp_path: Path) -> None:
    name = unique_name("weights")
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(safetensors_bytes({"w": [0.5] * 16}))
    done = as_json(
        cli(
            "upload", str(folder), "--name", name, "--version", "1.2.0",
            "--format", "safetensors", "--framework", "pytorch", "--task-type", "embedding",
            "--json",
        )
    )
    model_id = f"{name}_1_2_0"
    assert done["success"] is True and done["model_id"] == model_id, done
    row = listed(cli)[model_id]
    assert row["model_format"] == "safetensors" and row["framework"] == "pytorch"
    assert row["task_type"] == "embedding" and row["deployed"] is False
    table = ok(cli("list")).stdout
    assert model_id in table and "safetensors" in table

    preloaded = as_json(cli("deploy", model_id, "--json"))
    assert preloaded["model_id"] == model_id and preloaded["success"] is True, preloaded
    assert listed(cli)[model_id]["deployed"] is True

    assert "deleted model" in ok(cli("delete", model_id)).stdout
    assert model_id not in listed(cli)
    again = cli("delete", model_id)
    assert again.returncode == 1 and "error 404" in again.stderr and model_id in again.stderr


def test_upload_an_archive_with_deploy_and_see_the_organizations_models(
    cli: Any, tmp_path: Path
) -> None:
    name = unique_name("packed")
    archive = tmp_path / "packed.tar.gz"
    archive.write_bytes(tar_gz_bytes({"model.onnx": onnx_bytes()}, "packed/"))
    out = ok(
        cli("upload", str(archive), "--name", name, "--version", "2.0.0", "--format", "onnx",
            "--deploy")
    ).stdout
    model_id = f"{name}_2_0_0"
    assert f"uploaded model {model_id}" in out and "preloaded" in out, out
    assert listed(cli)[model_id]["deployed"] is True
    available = as_json(cli("list", "--available", "--json"))["models"]
    assert {m["model_id"]: m["enabled_in_namespace"] for m in available}[model_id] is True
    ok(cli("delete", model_id))


def test_a_wrong_format_is_refused_with_the_servers_message(cli: Any, tmp_path: Path) -> None:
    archive = tmp_path / "lie.tar.gz"
    archive.write_bytes(tar_gz_bytes({"model.onnx": safetensors_bytes()}))
    name = unique_name("lie")
    refused = cli("upload", str(archive), "--name", name, "--version", "1.0.0", "--format", "onnx")
    assert refused.returncode == 1, refused
    assert "error 422" in refused.stderr and "model.onnx" in refused.stderr, refused.stderr
    assert not any(m.startswith(name) for m in listed(cli))
    unknown = cli("upload", str(archive), "--name", name, "--version", "1", "--format", "pickle")
    assert unknown.returncode == 2 and "--format" in unknown.stderr


def test_a_model_used_by_a_deployed_plugin_is_not_deleted(
    cli: Any, server: LiveServer, tmp_path: Path
) -> None:
    name = unique_name("used")
    model_id = f"{name}_1_0_0"
    folder = tmp_path / "used"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(safetensors_bytes())
    ok(cli("upload", str(folder), "--name", name, "--version", "1.0.0", "--format",
           "safetensors"))
    plugin = unique_name("user")
    realtime = (  # the class attribute LazyModelMixin reads names the model
        "class RealtimeHandler:\n"
        f"    model_id = {model_id!r}\n\n"
        "    async def predict(self, request):\n"
        "        return {'model': self.model_id}\n"
    )
    manifest = f'feature_extractor_name = "{plugin}"\nversion = "1.0.0"\nfeatures = []\n'
    files: dict[str, str | bytes] = {
        "manifest.py": manifest, "pipeline.py": PIPELINE, "realtime.py": realtime,
    }
    with server.client() as c:
        pid = upload(c, plugin, zip_bytes(files))
        deploy(c, pid)
        body, _ = wait_for(c, pid, {"deployed", "failed"})
        assert body["status"] == "deployed", body
        refused = cli("delete", model_id)
        assert refused.returncode == 1 and "error 409" in refused.stderr, refused
        assert pid in refused.stderr, refused.stderr
        assert model_id in listed(cli)
        assert c.post(f"/v1/namespaces/{NS}/plugins/{pid}/undeploy").status_code == 200
        wait_for(c, pid, {"not_deployed"}, timeout=60)
    ok(cli("delete", model_id))


def test_a_folder_with_a_symbolic_link_is_refused_before_the_upload(
    cli: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "linked"
    folder.mkdir()
    (folder / "model.safetensors").symlink_to("/etc/passwd")
    name = unique_name("linked")
    refused = cli("upload", str(folder), "--name", name, "--version", "1.0.0", "--format",
                  "safetensors")
    assert refused.returncode == 2 and "symbolic link" in refused.stderr, refused
    assert not any(m.startswith(name) for m in listed(cli))


def test_no_key_exits_2_and_an_unreachable_server_exits_1(cli: Any) -> None:
    no_key = cli("list", key=False)
    assert no_key.returncode == 2 and "no API key" in no_key.stderr
    down = cli("list", "--url", "http://127.0.0.1:9")
    assert down.returncode == 1 and "cannot reach the server" in down.stderr
