"""Unit tests of the sandbox pieces: policy, requirements, uid pool, bwrap command, launches,
and the in-process layers (seccomp, rlimits) applied in a throwaway child interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plughost.sandbox.bwrap import PLUGIN_MOUNT, MountPlan, bwrap_command
from plughost.sandbox.host import Sandbox, SandboxConfig, memory_gb_of
from plughost.sandbox.policy import RunnerPolicy
from plughost.sandbox.requirements import missing_requirements, normalise, requirement_name
from plughost.sandbox.seccomp import AF_INET, AF_INET6, AF_UNIX, socket_families_denied
from plughost.sandbox.uids import UidPool

ALL_LAYERS = {"bwrap": True, "netns": True, "uid": True, "seccomp": True, "rlimits": True}


def test_policy_round_trips_through_json() -> None:
    policy = RunnerPolicy(uid=5, gid=6, rlimits={"AS": 1 << 30, "CORE": 0}, seccomp=True,
                          allow_inet=True, required=("uid", "seccomp"))
    assert RunnerPolicy.from_json(policy.to_json()) == policy


@pytest.mark.parametrize("text", ["nope", "[1]", '{"rlimits": {"STACK": 1}}', '{"uid": "0"}'])
def test_policy_rejects_malformed_input(text: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        RunnerPolicy.from_json(text)


@pytest.mark.parametrize(
    ("entry", "name"),
    [("torch", "torch"), ("scikit-learn>=1.3", "scikit-learn"), ("numpy[extra]==1.0", "numpy"),
     (" pydantic_core ; python_version>'3'", "pydantic_core"), ("==1", None)],
)
def test_requirement_names(entry: str, name: str | None) -> None:
    assert requirement_name(entry) == name


def test_normalisation_treats_separators_alike() -> None:
    assert normalise("Pydantic_Core") == normalise("pydantic-core") == normalise("pydantic.core")


def test_missing_requirements_names_only_the_missing(tmp_path: Path) -> None:
    (tmp_path / "vendored_helper.py").write_text("")
    entries = ["orjson", "pydantic-core", "PyYAML>=5", "vendored_helper", "no_such_pkg_q", "==2"]
    assert missing_requirements(entries, tmp_path) == ["no_such_pkg_q", "==2"]
    assert missing_requirements([]) == []


def test_uid_pool_hands_out_distinct_ids_and_takes_them_back() -> None:
    pool = UidPool(1000, 3)
    ids = {pool.acquire() for _ in range(3)}
    assert ids == {1000, 1001, 1002}
    with pytest.raises(RuntimeError):
        pool.acquire()
    pool.release(1001)
    assert pool.acquire() == 1001
    assert pool.manifest_uid == 1003 and pool.manifest_uid not in ids


def test_socket_families_allowed_depend_on_egress() -> None:
    closed = socket_families_denied(allow_inet=False)
    assert AF_UNIX not in closed and AF_INET in closed and AF_INET6 in closed
    assert AF_INET not in socket_families_denied(allow_inet=True)


def _plan(tmp_path: Path, **kw: object) -> MountPlan:
    runtime = tmp_path / "runtime"
    runtime.mkdir(exist_ok=True)
    defaults: dict[str, object] = {
        "plugin_dir": tmp_path / "plugin",
        "runtime_paths": (runtime,),
        "hidden": (tmp_path / "home",),
    }
    defaults.update(kw)
    return MountPlan(**defaults)  # type: ignore[arg-type]


def test_bwrap_command_isolates_by_default(tmp_path: Path) -> None:
    argv = bwrap_command("bwrap", _plan(tmp_path))
    assert argv[0] == "bwrap" and argv[-1] == "--"
    for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent"):
        assert flag in argv
    i = argv.index(PLUGIN_MOUNT)
    assert argv[i - 2 : i] == ["--ro-bind", str(tmp_path / "plugin")]
    assert "--bind" not in argv  # nothing of the host is writable
    assert str(tmp_path / "home") not in argv  # not inside a bound folder: simply absent
    j = argv.index(str(tmp_path))
    assert argv[j - 3 : j] == ["--perms", "0755", "--dir"]


def test_bwrap_masks_a_hidden_folder_inside_a_bound_one(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    argv = bwrap_command("bwrap", _plan(tmp_path, hidden=(runtime / "home",)))
    i = argv.index("--tmpfs", argv.index(str(runtime)))
    assert argv[i + 1] == str(runtime / "home")


def test_bwrap_shares_the_network_only_when_asked(tmp_path: Path) -> None:
    assert "--unshare-net" not in bwrap_command("bwrap", _plan(tmp_path, share_net=True))
    as_root = bwrap_command("bwrap", _plan(tmp_path, as_root=True))
    assert as_root[as_root.index("--cap-drop") + 1] == "ALL"


def _sandbox(mode: str = "auto", **layers: bool) -> Sandbox:
    config = SandboxConfig(mode=mode, egress_namespaces=frozenset({"ns_out"}), uid_base=7000,
                           uid_count=10)
    return Sandbox(config, {**ALL_LAYERS, **layers}, bwrap_path="/usr/bin/bwrap",
                   uids=UidPool(7000, 10) if layers.get("uid", True) else None)


def test_replica_launch_carries_every_layer(tmp_path: Path) -> None:
    sandbox = _sandbox()
    launch = sandbox.replica_launch(tmp_path, "ns_default", {"memory_gb": 3})
    assert launch is not None and launch.prefix[0] == "/usr/bin/bwrap"
    assert "--unshare-net" in launch.prefix and launch.plugin_dir == PLUGIN_MOUNT
    policy = RunnerPolicy.from_json(launch.policy_json)
    assert policy.uid == launch.uid and 7000 <= policy.uid < 7010
    assert policy.rlimits["AS"] == 3 * 1024**3 and policy.rlimits["CORE"] == 0
    assert "NPROC" in policy.rlimits and policy.seccomp and not policy.allow_inet
    assert launch.env["HOME"] == "/tmp"
    sandbox.release(launch)
    assert sandbox.uids is not None and sandbox.uids.leased == 0


def test_egress_namespace_keeps_the_network(tmp_path: Path) -> None:
    launch = _sandbox().replica_launch(tmp_path, "ns_out", {})
    assert launch is not None and "--unshare-net" not in launch.prefix
    assert RunnerPolicy.from_json(launch.policy_json).allow_inet


def test_launch_degrades_without_bwrap_and_uid(tmp_path: Path) -> None:
    launch = _sandbox(bwrap=False, netns=False, uid=False).replica_launch(tmp_path, None, {})
    assert launch is not None and launch.prefix == () and launch.plugin_dir == str(tmp_path)
    policy = RunnerPolicy.from_json(launch.policy_json)
    assert policy.uid is None and "NPROC" not in policy.rlimits
    assert set(policy.required) == {"seccomp", "rlimits"}


def test_off_mode_wraps_nothing(tmp_path: Path) -> None:
    assert _sandbox(mode="off").replica_launch(tmp_path, None, {}) is None


def test_strict_mode_requires_the_in_process_layers(tmp_path: Path) -> None:
    launch = _sandbox(mode="strict").replica_launch(tmp_path, None, {})
    assert launch is not None
    assert set(RunnerPolicy.from_json(launch.policy_json).required) == {"uid", "seccomp", "rlimits"}


@pytest.mark.parametrize(("raw", "value"), [(4, 4.0), ("1.5", 1.5), (None, 2.0), (-1, 2.0),
                                            (True, 2.0), ("lots", 2.0)])
def test_memory_gb_falls_back_to_the_default(raw: object, value: float) -> None:
    assert memory_gb_of({"memory_gb": raw}, 2.0) == value


CHILD = r"""
import json, os, resource, socket, sys
from plughost.sandbox.policy import RunnerPolicy
from plughost.sandbox.runner import enter
applied = enter(RunnerPolicy.from_json(sys.argv[1]))
out = {"applied": applied, "as": resource.getrlimit(resource.RLIMIT_AS)[0]}
try:
    os.posix_spawn("/bin/true", ["true"], {})
    out["spawn"] = "ran"
except OSError as exc:
    out["spawn"] = exc.errno
for name, family in (("inet", socket.AF_INET), ("unix", socket.AF_UNIX)):
    try:
        socket.socket(family, socket.SOCK_STREAM).close()
        out[name] = "ok"
    except OSError as exc:
        out[name] = exc.errno
print(json.dumps(out))
"""


def test_runner_layers_hold_in_a_child_interpreter() -> None:
    policy = RunnerPolicy(rlimits={"AS": 3 * 1024**3, "CORE": 0}, seccomp=True,
                          required=("seccomp", "rlimits"))
    done = subprocess.run([sys.executable, "-I", "-c", CHILD, policy.to_json()],
                          capture_output=True, text=True, timeout=60, check=True)
    out = json.loads(done.stdout)
    assert out["applied"]["seccomp"] is True and out["applied"]["rlimits"] is True
    assert out["as"] == 3 * 1024**3
    assert out["spawn"] == 1  # EPERM: execve is refused
    assert out["inet"] == 1 and out["unix"] == "ok"
