"""The cgroup layer against the real kernel (skipped where cgroups are not writable): a
process past its memory limit is OOM-killed inside its cgroup and the words say so, the
namespace parent caps the sum of its processes, the pids limit stops a fork bomb, a large
address-space reservation or file map runs under a small memory limit, and every folder is
gone afterwards."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from plughost.sandbox.cgroups import CgroupTree, start_cgroups
from plughost.sandbox.policy import CgroupLease

pytestmark = pytest.mark.security

HOLD = """
import sys
block = bytearray({mb} * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def tree() -> Iterator[CgroupTree]:
    found = start_cgroups("auto", f"test{uuid.uuid4().hex[:8]}", pids_max=32, cpu_weight=50)
    if found is None:
        pytest.skip("no writable cgroups on this machine")
    yield found
    for lease_dir in list(found.pending):
        found._kill_inside(lease_dir)
    found.close()
    assert not any(root.exists() for root in found.roots.values()), "cgroups left behind"


def _run(tree: CgroupTree, lease: CgroupLease, code: str, **kwargs: object) -> subprocess.Popen:
    argv = [*tree.enter_argv(lease), sys.executable, "-I", "-c", code]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)  # type: ignore[call-overload]


def test_a_process_past_its_limit_is_killed_in_its_cgroup_and_a_neighbour_lives_on(
    tree: CgroupTree,
) -> None:
    tree.default_namespace_mb = 1024  # a cap far away: the words name the own limit
    neighbour_lease = tree.lease("ns_other", 256)
    neighbour = _run(tree, neighbour_lease, HOLD.format(mb=64))
    assert neighbour.stdout is not None and neighbour.stdout.readline().strip() == "holding"
    hog_lease = tree.lease("ns_a", 100)
    hog = _run(tree, hog_lease, HOLD.format(mb=400))
    _, err = hog.communicate(timeout=120)
    assert hog.returncode == -9, err
    tree.release(hog_lease)
    assert hog_lease.ended == "killed: past its memory limit of 100 MB (cgroup)"
    assert neighbour.poll() is None  # the kernel killed only inside the hog's cgroup
    neighbour.communicate("", timeout=60)
    assert neighbour.returncode == 0
    tree.release(neighbour_lease)
    assert neighbour_lease.ended is None


def test_the_namespace_parent_caps_the_sum_of_its_processes(tree: CgroupTree) -> None:
    tree.default_namespace_mb = 200
    first_lease, second_lease = tree.lease("ns_cap", 150), tree.lease("ns_cap", 150)
    assert first_lease.namespace_mb == 200
    first = _run(tree, first_lease, HOLD.format(mb=120))
    assert first.stdout is not None and first.stdout.readline().strip() == "holding"
    second = _run(tree, second_lease, HOLD.format(mb=120))  # 240 MB together: past the cap
    assert second.stdout is not None
    second.stdout.readline()
    for proc in (first, second):
        if proc.poll() is None:
            proc.communicate("", timeout=60)
    codes = sorted([first.returncode, second.returncode])
    assert codes[0] == -9, codes  # the kernel killed one of them, each under its own limit
    tree.release(first_lease)
    tree.release(second_lease)
    words = [w for w in (first_lease.ended, second_lease.ended) if w]
    assert words and all("namespace went past its memory cap of 200 MB" in w for w in words)


FORK_BOMB = """
import os, time
children, failures = [], 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        failures += 1
        continue
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    children.append(pid)
print(len(children), failures, flush=True)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


def test_the_pids_limit_stops_a_fork_bomb(tree: CgroupTree) -> None:
    lease = tree.lease("ns_a", 256)
    proc = _run(tree, lease, FORK_BOMB)
    out, err = proc.communicate(timeout=120)
    started, failures = map(int, out.split())
    assert started < 32 and failures > 0, (out, err)  # pids.max 32 (no NPROC rlimit here)
    tree.release(lease)


MAPS = """
import mmap, os, sys
reserve = mmap.mmap(-1, 4 * 1024 ** 3, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                    prot=mmap.PROT_READ | mmap.PROT_WRITE)
reserve[:4096] = b"x" * 4096
path = sys.argv[1]
with open(path, "r+b") as f:
    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
print(len(reserve) // 2 ** 20, len(mapped) // 2 ** 20, mapped[10 ** 9 : 10 ** 9 + 4] == bytes(4))
"""


def test_a_large_reservation_and_file_map_run_under_a_small_memory_limit(
    tree: CgroupTree, tmp_path: Path
) -> None:
    sparse = tmp_path / "weights.bin"
    with open(sparse, "wb") as f:
        f.truncate(2 * 1024**3)  # a 2 GB file of holes, as a safetensors map would be
    lease = tree.lease("ns_a", 128)
    argv = [*tree.enter_argv(lease), sys.executable, "-I", "-c", MAPS, str(sparse)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4096", "2048", "True"]
    tree.release(lease)
    assert lease.ended is None
