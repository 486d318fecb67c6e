"""Replicas that outlive the server (issue 14) keep every sandbox layer; only bubblewrap's
die-with-parent goes, and an adopted replica's uid stays leased."""

from __future__ import annotations

from pathlib import Path

from plughost.sandbox.bwrap import MountPlan, bwrap_command
from plughost.sandbox.uids import UidPool


def test_a_detached_replica_keeps_every_namespace_but_not_die_with_parent(tmp_path: Path) -> None:
    plan = MountPlan(plugin_dir=tmp_path / "plugin", runtime_paths=(tmp_path,))
    attached = bwrap_command("bwrap", plan)
    detached = bwrap_command("bwrap", MountPlan(
        plugin_dir=tmp_path / "plugin", runtime_paths=(tmp_path,), die_with_parent=False
    ))
    assert "--die-with-parent" in attached and "--die-with-parent" not in detached
    assert [a for a in attached if a != "--die-with-parent"] == detached
    for flag in ("--unshare-net", "--unshare-pid", "--unshare-ipc", "--remount-ro"):
        assert flag in detached


def test_a_claimed_uid_is_never_handed_out_again_until_released() -> None:
    pool = UidPool(5000, 2)
    first = pool.acquire()
    pool.release(first)
    pool.claim(first)
    assert pool.acquire() != first
    assert pool.leased == 2
    pool.release(first)
    assert pool.acquire() == first
