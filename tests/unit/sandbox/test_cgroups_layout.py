"""Unit tests of the cgroup layer's logic (plughost.sandbox.cgroups) on a folder tree that
fakes the cgroup files: detection, the per-server root, the namespace parent and its cap,
each process's limits, OOM words, the sweep of a crashed server's folders, and the sandbox's
launches with and without cgroups (no address-space rlimit with them)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from plughost.backends.local.exit_reason import cgroup_kill, describe_exit, note_cgroup_kill
from plughost.errors import StartFailed
from plughost.sandbox import cgroups
from plughost.sandbox.cgroup_detect import detect, own_cgroups
from plughost.sandbox.cgroups import ENTER_SCRIPT, CgroupTree, group_name
from plughost.sandbox.host import Sandbox, SandboxConfig
from plughost.sandbox.policy import MIB, RunnerPolicy
from plughost.sandbox.uids import UidPool

V1_SELF = "9:name=systemd:/\n8:pids:/\n4:memory:/svc/abc\n1:cpu:/\n0::/\n"
ALL_LAYERS = {"bwrap": True, "netns": True, "uid": True, "seccomp": True, "rlimits": True}


def _fake_rmdir(path: Path) -> None:
    """rmdir as cgroupfs does it: refused while a process or a child cgroup is inside."""
    if any(p.is_dir() for p in path.iterdir()) or (path / "cgroup.procs").read_text().strip():
        raise OSError(errno.EBUSY, "busy", str(path))
    shutil.rmtree(path)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "remove_dir", _fake_rmdir)
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:  # a cgroup comes with files
        existed = self.exists()
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        if not existed:
            (self / "cgroup.procs").write_text("")

    monkeypatch.setattr(Path, "mkdir", mkdir)


def _v1_tree(tmp_path: Path) -> Path:
    mount = tmp_path / "cg"
    for controller in ("memory", "pids", "cpu"):
        (mount / controller).mkdir(parents=True)
        (mount / controller / "cgroup.procs").write_text("")
    (mount / "memory" / "svc" / "abc").mkdir(parents=True)
    proc = tmp_path / "self_cgroup"
    proc.write_text(V1_SELF)
    return mount


def _tree(tmp_path: Path, **kwargs: object) -> CgroupTree:
    mount = _v1_tree(tmp_path)
    found = detect(mount, tmp_path / "self_cgroup")
    assert found is not None
    tree = CgroupTree(found[0], found[1], "tag", pid=4242, **kwargs)  # type: ignore[arg-type]
    tree.setup()
    return tree


def test_own_cgroups_reads_each_controller_and_the_unified_path() -> None:
    own = own_cgroups("4:memory:/a/b\n2:cpu,cpuacct:/c\n9:name=systemd:/s\n0::/u\n")
    assert own == {"memory": "/a/b", "cpu": "/c", "cpuacct": "/c", "systemd": "/s", "": "/u"}


def test_detect_prefers_a_v2_hierarchy_with_memory_and_pids(tmp_path: Path) -> None:
    mount = _v1_tree(tmp_path)
    (mount / "unified").mkdir()
    (mount / "unified" / "cgroup.controllers").write_text("")  # empty v2, as on this machine
    version, bases = detect(mount, tmp_path / "self_cgroup") or ("", {})
    assert version == "v1"
    # nested under the server's own memory cgroup; pids and cpu at their root
    assert bases == {"memory": mount / "memory/svc/abc", "pids": mount / "pids",
                     "cpu": mount / "cpu"}
    (mount / "unified" / "cgroup.controllers").write_text("cpu memory pids\n")
    assert detect(mount, tmp_path / "self_cgroup") == ("v2", {"": mount / "unified"})


def test_detect_finds_nothing_without_memory_and_pids(tmp_path: Path) -> None:
    assert detect(tmp_path, tmp_path / "missing") is None


@pytest.mark.usefixtures("fake")
def test_a_lease_has_its_limits_under_the_namespace_parent(tmp_path: Path) -> None:
    tree = _tree(tmp_path, pids_max=64, default_namespace_mb=0)
    lease = tree.lease("ns_a", 512)
    memory, pids, _cpu = (Path(d) for d in lease.dirs)
    assert memory.parent.name == "ns-ns_a" and memory.parent.parent == tree.roots["memory"]
    assert tree.roots["memory"].name == "plughost-tag-4242"
    assert int((memory / "memory.limit_in_bytes").read_text()) == 512 * MIB
    assert int((pids / "pids.max").read_text()) == 64
    # no namespace cap: the parent has none (-1 on v1)
    assert int((memory.parent / "memory.limit_in_bytes").read_text()) == -1
    assert lease.namespace_mb is None
    argv = tree.enter_argv(lease)
    assert argv[:3] == ("/bin/sh", "-c", ENTER_SCRIPT) and argv[-1] == "--"
    assert argv[4:-1] == tuple(str(Path(d) / "cgroup.procs") for d in lease.dirs)
    tree.release(lease)
    assert lease.ended is None and not memory.exists() and not pids.exists()


@pytest.mark.usefixtures("fake")
def test_the_namespace_parent_caps_the_sum_from_the_policy_or_the_default(tmp_path: Path) -> None:
    caps = {"ns_q": 300}
    tree = _tree(tmp_path, default_namespace_mb=2048, namespace_memory_mb=caps.get)
    quota = tree.lease("ns_q", 200)
    default = tree.lease("ns_d", 200)
    assert quota.namespace_mb == 300 and default.namespace_mb == 2048
    parent = Path(quota.dirs[0]).parent
    assert int((parent / "memory.limit_in_bytes").read_text()) == 300 * MIB
    assert int((Path(default.dirs[0]).parent / "memory.limit_in_bytes").read_text()) == 2048 * MIB
    pool = tree.lease(None, 200, pool=True, name="pool-1")
    assert Path(pool.dirs[0]).parent.name == "pool" and pool.namespace_mb is None


@pytest.mark.usefixtures("fake")
def test_a_pool_member_moves_with_its_processes_into_the_claiming_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = _tree(tmp_path)
    lease = tree.lease(None, 256, pool=True, name="pool-1")
    old = [Path(d) for d in lease.dirs]
    for folder in old:
        (folder / "cgroup.procs").write_text("101\n102\n")
    real_write = cgroups._write

    def write(path: Path, value: object) -> None:  # the kernel moves the pid out of the old
        if path.name != "cgroup.procs":
            return real_write(path, value)
        source = next(f for f in old if f.parents[1] == path.parents[2])
        left = [p for p in (source / "cgroup.procs").read_text().split() if p != str(value)]
        (source / "cgroup.procs").write_text("\n".join(left))
        with open(path, "a") as f:
            f.write(f"{value}\n")
        return None

    monkeypatch.setattr(cgroups, "_write", write)
    tree.move(lease, "ns_b")
    assert all(Path(d).parent.name == "ns-ns_b" for d in lease.dirs)
    assert all((Path(d) / "cgroup.procs").read_text().split() == ["101", "102"] for d in lease.dirs)
    assert not any(folder.exists() for folder in old)  # the pool cgroup is gone


@pytest.mark.usefixtures("fake")
def test_oom_words_name_the_own_limit_or_the_namespace_cap(tmp_path: Path) -> None:
    tree = _tree(tmp_path, default_namespace_mb=700)
    lease = tree.lease("ns_a", 512)
    memory = Path(lease.dirs[0])
    assert tree.kill_note(lease) is None
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (memory / "memory.failcnt").write_text("0\n")
    assert tree.kill_note(lease) == (
        "killed: its namespace went past its memory cap of 700 MB "
        "(cgroup; the namespace's replicas and batch workers share it)"
    )
    (memory / "memory.max_usage_in_bytes").write_text(f"{512 * MIB}\n")  # failcnt untracked
    assert tree.kill_note(lease) == "killed: past its memory limit of 512 MB (cgroup)"
    (memory / "memory.max_usage_in_bytes").write_text(f"{300 * MIB}\n")
    (memory / "memory.failcnt").write_text("17\n")
    tree.release(lease)
    assert lease.ended == "killed: past its memory limit of 512 MB (cgroup)"
    launch = type("Launch", (), {"cgroup": lease})()
    assert describe_exit(-9, 512, killed=cgroup_kill(launch)).startswith(
        "the replica was killed: past its memory limit of 512 MB (cgroup)"
    )
    error = StartFailed("replica exited before it was ready")
    note_cgroup_kill(error, launch)
    assert "killed: past its memory limit of 512 MB (cgroup) while starting" in str(error)


@pytest.mark.usefixtures("fake")
def test_a_busy_cgroup_is_killed_and_retried_later(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    lease = tree.lease("ns_a", 512)
    memory = Path(lease.dirs[0])
    (memory / "cgroup.procs").write_text("999999999\n")  # no such process: kill is harmless
    tree.release(lease)
    assert memory.exists() and memory in tree.pending
    (memory / "cgroup.procs").write_text("")
    tree.release(tree.lease("ns_a", 512))
    assert not memory.exists() and tree.pending == []


@pytest.mark.usefixtures("fake")
def test_start_sweeps_what_a_dead_server_of_this_home_left(tmp_path: Path) -> None:
    mount = _v1_tree(tmp_path)
    base = mount / "pids"
    dead = base / "plughost-tag-999999999"
    (dead / "ns-a" / "p-empty").mkdir(parents=True)
    (dead / "ns-a" / "p-busy").mkdir(parents=True)
    (dead / "ns-a" / "p-busy" / "cgroup.procs").write_text("1\n")  # an adopted replica
    alive = base / f"plughost-tag-{os.getpid()}"
    (alive / "ns-a").mkdir(parents=True)
    other = base / "plughost-othertag-999999999"  # another home's dead server: empty
    other.mkdir()
    unrelated = base / "someone-else-999999999"
    unrelated.mkdir()
    found = detect(mount, tmp_path / "self_cgroup")
    assert found is not None
    CgroupTree(found[0], found[1], "tag", pid=4242).setup()
    assert not (dead / "ns-a" / "p-empty").exists() and (dead / "ns-a" / "p-busy").exists()
    assert alive.exists() and not other.exists() and unrelated.exists()


def test_group_names_are_safe_folder_names() -> None:
    assert group_name("ns_default") == "ns-ns_default"
    assert group_name(None) == "ns-"
    assert "/" not in group_name("../x") and group_name("..") != "ns-.."


def _sandbox(tree: CgroupTree | None) -> Sandbox:
    config = SandboxConfig(mode="auto", uid_base=7000, uid_count=10)
    return Sandbox(config, dict(ALL_LAYERS), bwrap_path="/usr/bin/bwrap",
                   uids=UidPool(7000, 10), cgroups=tree)


@pytest.mark.usefixtures("fake")
def test_with_cgroups_a_replica_enters_its_cgroup_and_has_no_address_space_limit(
    tmp_path: Path,
) -> None:
    sandbox = _sandbox(_tree(tmp_path))
    launch = sandbox.replica_launch(tmp_path, "ns_a", {"memory_gb": 0.5})
    assert launch is not None and launch.cgroup is not None
    assert launch.argv_prefix[0] == "/bin/sh" and launch.prefix[0] == "/usr/bin/bwrap"
    assert launch.argv_prefix[len(launch.enter):] == launch.prefix
    assert launch.cgroup.memory_mb == 512
    policy = RunnerPolicy.from_json(launch.policy_json)
    assert "AS" not in policy.rlimits and policy.rlimits["CORE"] == 0
    assert sandbox.status()["memory_limit"] == "cgroup-v1"
    sandbox.release(launch)
    assert not Path(launch.cgroup.dirs[0]).exists()


def test_without_cgroups_the_address_space_rlimit_stays(tmp_path: Path) -> None:
    sandbox = _sandbox(None)
    launch = sandbox.replica_launch(tmp_path, "ns_a", {"memory_gb": 0.5})
    assert launch is not None and launch.enter == () and launch.cgroup is None
    assert RunnerPolicy.from_json(launch.policy_json).rlimits["AS"] == 512 * MIB
    assert sandbox.status()["memory_limit"] == "rlimit"


def test_the_entry_shell_writes_its_own_pid_then_execs(tmp_path: Path) -> None:
    files = [tmp_path / "a.procs", tmp_path / "b.procs"]
    argv = ["/bin/sh", "-c", ENTER_SCRIPT, "x", *map(str, files), "--", "/bin/sh", "-c",
            "echo $$"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)
    assert [f.read_text().strip() for f in files] == [out.stdout.strip()] * 2
    failed = subprocess.run([*argv[:4], str(tmp_path / "no" / "such"), "--", "/bin/true"],
                            check=False, capture_output=True, timeout=30)
    assert failed.returncode == 125  # never runs the command outside its cgroup


@pytest.mark.usefixtures("fake")
def test_replicas_and_batch_workers_start_with_the_cgroup_entry(tmp_path: Path) -> None:
    from plughost.backends.local.launch import ReplicaSpec, build_replica_command
    from plughost.batch.launcher import WorkerSpec

    sandbox = _sandbox(_tree(tmp_path))
    launch = sandbox.replica_launch(tmp_path, "ns_a", {})
    assert launch is not None and launch.enter
    replica = build_replica_command(ReplicaSpec(tmp_path, tmp_path / "s.sock", sandbox=launch))
    worker = WorkerSpec(tmp_path, sandbox=launch).argv()
    for argv in (replica, worker):
        assert tuple(argv[: len(launch.argv_prefix)]) == launch.argv_prefix
    sandbox.release(launch)
