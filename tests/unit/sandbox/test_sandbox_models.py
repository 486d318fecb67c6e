"""The namespace model folder and the Hugging Face cache in plugin processes: created on
demand, bound read-only under /plughost in bubblewrap (only the process's own namespace),
named by PLUGHOST_MODELS_DIR / PLUGHOST_HF_CACHE; real paths without bubblewrap."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plughost.runtime_api import RUNTIME_API_DIR
from plughost.sandbox.bwrap import MountPlan, bwrap_command, plughost_root, runtime_paths
from plughost.sandbox.host import Sandbox, SandboxConfig
from plughost.sandbox.models import (
    HF_MOUNT,
    MODELS_MOUNT,
    ModelShare,
    ensure_namespace_folder,
)

BWRAP = Path("/usr/bin/bwrap")
LAYERS = {"bwrap": True, "netns": True, "uid": False, "seccomp": False, "rlimits": False}


def _share(tmp_path: Path, hf: bool = True) -> ModelShare:
    hf_cache = tmp_path / "hf"
    if hf:
        hf_cache.mkdir()
    return ModelShare(tmp_path / "models" / "ns", hf_cache if hf else None)


def test_a_namespace_folder_is_created_with_an_empty_index(tmp_path: Path) -> None:
    folder = _share(tmp_path).folder("ns_a")
    assert folder == tmp_path / "models" / "ns" / "ns_a"
    assert json.loads((folder / "index.json").read_text()) == {"models": {}}
    assert [p.name for p in folder.iterdir()] == ["index.json"]  # no temp file left


def test_an_existing_index_is_never_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "ns_a"
    folder.mkdir()
    (folder / "index.json").write_text('{"models": {"m_1": {}}}')
    ensure_namespace_folder(folder)
    assert "m_1" in (folder / "index.json").read_text()


@pytest.mark.parametrize("namespace", ["", "..", "a/b", "../ns_b", None])
def test_no_folder_for_a_missing_or_unsafe_namespace(tmp_path: Path, namespace: str) -> None:
    assert _share(tmp_path).folder(namespace) is None
    assert not (tmp_path / "models" / "ns").exists() or not any(
        (tmp_path / "models" / "ns").iterdir()
    )


def test_env_names_mounts_when_wrapped_and_real_paths_otherwise(tmp_path: Path) -> None:
    share = _share(tmp_path)
    wrapped = share.env("ns_a", wrapped=True)
    assert wrapped == {"PLUGHOST_MODELS_DIR": MODELS_MOUNT, "PLUGHOST_HF_CACHE": HF_MOUNT,
                       "HF_HUB_CACHE": HF_MOUNT, "HF_HUB_OFFLINE": "1"}
    plain = share.env("ns_a", wrapped=False)
    assert plain["PLUGHOST_MODELS_DIR"] == str(tmp_path / "models" / "ns" / "ns_a")
    assert plain["PLUGHOST_HF_CACHE"] == str(tmp_path / "hf")
    assert ModelShare().env("ns_a", wrapped=True) == {}


def test_replica_launch_binds_only_its_namespace_and_sets_the_env(tmp_path: Path) -> None:
    config = SandboxConfig(mode="auto", models_root=tmp_path / "models" / "ns",
                           hf_cache=tmp_path / "hf")
    (tmp_path / "hf").mkdir()
    sandbox = Sandbox(config, dict(LAYERS), bwrap_path=str(BWRAP))
    launch = sandbox.replica_launch(tmp_path, "ns_a", {})
    assert launch is not None
    prefix = list(launch.prefix)
    bind = prefix.index(MODELS_MOUNT)
    assert prefix[bind - 2 : bind] == ["--ro-bind", str(tmp_path / "models" / "ns" / "ns_a")]
    assert prefix[prefix.index(HF_MOUNT) - 2] == "--ro-bind"
    assert str(tmp_path / "models" / "ns") not in prefix  # never the whole models cache
    assert launch.env["PLUGHOST_MODELS_DIR"] == MODELS_MOUNT


def test_without_bubblewrap_the_launch_names_the_real_folder(tmp_path: Path) -> None:
    config = SandboxConfig(mode="auto", models_root=tmp_path / "ns")
    sandbox = Sandbox(config, {**LAYERS, "bwrap": False})
    launch = sandbox.replica_launch(tmp_path, "ns_a", {})
    assert launch is not None and not launch.prefix
    assert launch.env["PLUGHOST_MODELS_DIR"] == str(tmp_path / "ns" / "ns_a")


PROBE = textwrap.dedent(f"""
    import errno, json, os, sys
    sys.path.append({str(RUNTIME_API_DIR)!r})
    from engine.models import load_namespace_model
    print(json.dumps(sorted(os.listdir("/plughost/models"))))
    print(os.path.exists("/plughost/models/../../ns_b"), load_namespace_model("m_1_0_0"))
    try:
        open("/plughost/models/index.json", "w")
    except OSError as exc:
        print("read-only" if exc.errno in (errno.EROFS, errno.EACCES) else exc)
""")


@pytest.mark.skipif(not BWRAP.exists(), reason="bubblewrap is not installed")
def test_in_bubblewrap_the_plugin_sees_its_models_read_only(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    root = tmp_path / "models" / "ns"
    share = ModelShare(root, None)
    folder = share.folder("ns_a")
    assert folder is not None
    (folder / "m_1_0_0").mkdir()
    (folder / "m_1_0_0" / "config.json").write_text("{}")
    (folder / "index.json").write_text(json.dumps(
        {"models": {"m_1_0_0": {"name": "m", "model_format": "huggingface", "path": "m_1_0_0"}}}
    ))
    share.folder("ns_b")
    plan = MountPlan(plugin_dir=tmp_path, runtime_paths=runtime_paths([plughost_root()]),
                     model_binds=tuple(share.binds("ns_a")))
    argv = [*bwrap_command(str(BWRAP), plan), sys.executable, "-I", "-c", PROBE]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60,
                          env={**share.env("ns_a", wrapped=True), "PATH": "/usr/bin:/bin"})
    if done.returncode != 0 and "bwrap" in done.stderr:
        pytest.skip(f"bubblewrap cannot run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    listing, found, written = done.stdout.splitlines()
    assert json.loads(listing) == ["index.json", "m_1_0_0"]
    assert found == "False /plughost/models/m_1_0_0"
    assert written == "read-only"


def test_a_pool_member_binds_its_empty_slot_and_no_namespace(tmp_path: Path) -> None:
    config = SandboxConfig(mode="auto", models_root=tmp_path / "models" / "ns",
                           hf_cache=tmp_path / "hf")
    (tmp_path / "hf").mkdir()
    sandbox = Sandbox(config, dict(LAYERS), bwrap_path=str(BWRAP))
    slot = tmp_path / "pool" / "pool-1"
    launch = sandbox.pool_launch(slot, detached=True)
    assert launch is not None
    prefix = list(launch.prefix)
    plugin = prefix.index("/plugin")
    assert prefix[plugin - 2 : plugin] == ["--ro-bind", str(slot / "plugin")]
    models = prefix.index(MODELS_MOUNT)
    assert prefix[models - 2 : models] == ["--ro-bind", str(slot / "models")]
    assert prefix[prefix.index(HF_MOUNT) - 2] == "--ro-bind"  # shared by every namespace
    assert not any(str(tmp_path / "models") in arg for arg in prefix)
    assert "--unshare-net" in prefix and "--die-with-parent" not in prefix
    assert "PLUGHOST_MODELS_DIR" not in launch.env  # the claim brings the namespace's env


def test_the_pool_serves_only_releases_wrapped_as_its_members(tmp_path: Path) -> None:
    config = SandboxConfig(mode="auto", memory_gb=2.0, egress_namespaces=frozenset({"ns_out"}))
    sandbox = Sandbox(config, dict(LAYERS), bwrap_path=str(BWRAP))
    assert sandbox.poolable("ns_a", {}, None)
    assert sandbox.poolable("ns_a", {"memory_gb": 2}, None)
    assert not sandbox.poolable("ns_a", {"memory_gb": 4}, None)
    assert not sandbox.poolable("ns_out", {}, None)  # egress: another network
    assert not sandbox.poolable("ns_a", {}, tmp_path)  # a plugin environment
    assert Sandbox(config, {**LAYERS, "bwrap": False}).pool_launch(tmp_path, True) is None
