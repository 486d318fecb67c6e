"""The benchmark harness on its tiny profile, so it cannot rot.

This asserts that every output exists and holds numbers; it never asserts a timing: a
benchmark is not a test (bench/README.md).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]  # one tiny bench run: minutes


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-out")
    work = tmp_path_factory.mktemp("bench-work")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--profile",
            "tiny",
            "--out",
            str(out),
            "--work-dir",
            str(work),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=720,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_tiny_run_writes_markdown_plot_and_json(tiny_run: Path) -> None:
    md = (tiny_run / "latest.md").read_text()
    assert md.startswith("# plughost benchmarks")
    for section in (
        "## Goals",
        "## Request path",
        "## Deploys",
        "## Idle memory",
        "## Status endpoint under deployments",
        "## Deployments queued at once",
        "## CPU per request",
        "## Micro-batching (issue 26)",
    ):
        assert section in md
    png = (tiny_run / "latest.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    json.loads((tiny_run / "latest.json").read_text())


def test_request_path_figures_are_numbers_for_floor_and_plughost(tiny_run: Path) -> None:
    res = json.loads((tiny_run / "latest.json").read_text())
    summary = res["summary"]["hash16"]
    for point in ("c=1", "c=8", "open@50/s"):
        for system in ("floor", "plughost", "plughost-alias"):
            cell = summary[point][system]
            for key in ("rps", "p50_us", "p99_us", "cpu_us_per_req"):
                assert _is_number(cell[key]) and cell[key] > 0, (point, system, key, cell)
            assert cell["failed"] == 0, (point, system, cell)


def test_ray_serve_baseline_runs_when_ray_is_installed(tiny_run: Path) -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (plughost[ray])")
    res = json.loads((tiny_run / "latest.json").read_text())
    assert "ray-serve" not in res["skipped"], res["skipped"]
    cell = res["summary"]["hash16"]["c=1"]["ray-serve"]
    assert _is_number(cell["rps"]) and cell["rps"] > 0
    assert all(_is_number(x) and x > 0 for x in res["deploy"]["ray_serve_run"])


def test_control_plane_figures_are_numbers(tiny_run: Path) -> None:
    res = json.loads((tiny_run / "latest.json").read_text())
    assert res["deploy"]["plughost"] and all(_is_number(x) for x in res["deploy"]["plughost"])
    assert res["redeploy"] and all(_is_number(x) for x in res["redeploy"])
    assert _is_number(res["bluegreen"]["requests"]) and res["bluegreen"]["requests"] > 0
    assert _is_number(res["bluegreen"]["failed"])
    assert _is_number(res["status"]["rps"]) and _is_number(res["status"]["p99_us"])
    queue = res["queue"]
    assert queue["queued"] == 3 and _is_number(queue["total_s"])
    assert _is_number(queue["deployed"])
    memory = res["memory"]["hash16"]
    assert memory["bare"]["rss_kb"] > 0
    assert memory["plughost"]["rss_kb"] > 0


def test_namespace_model_figures_are_numbers(tiny_run: Path) -> None:
    models = json.loads((tiny_run / "latest.json").read_text())["models"]
    for kind in ("cold", "warm"):
        assert all(_is_number(models[kind][k]) for k in ("first_answer_s", "deploy_s", "load_s"))
    for kind in ("mmap4", "copy4"):
        assert models[kind]["replicas"] == 4, models[kind]
        assert all(_is_number(x) and x > 0 for x in models[kind]["pss_mb_each"])


def _goal_rows() -> int:
    """How many rows bench/report.py's GOALS table has (read in a child: `bench` here would
    be this tests folder)."""
    proc = subprocess.run(
        [sys.executable, "-c", "from bench.report import GOALS; print(len(GOALS))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(proc.stdout.strip())


def test_every_goal_is_reported_with_a_verdict(tiny_run: Path) -> None:
    res = json.loads((tiny_run / "latest.json").read_text())
    goals = res["goals"]
    # every row of the harness's goals table is reported, once
    assert goals and len(goals) == _goal_rows()
    for goal in goals:
        assert goal["met"] in (True, False, None)
        assert goal["measured"]
    md = (tiny_run / "latest.md").read_text()
    assert all(goal["figure"] in md for goal in goals)


def test_batching_run_on_the_tiny_profile(tmp_path: Path) -> None:
    """bench.batching alone (its own server, a few seconds a leg): every leg answered, with
    numbers, and the ratios computed. No timing is asserted, not even batched > unbatched."""
    out = tmp_path / "batching.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.batching", "--profile", "tiny", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = json.loads(out.read_text())["batching"]
    legs = ["sleep_b", "sleep_u"]
    if "minilm_skipped" not in table:
        legs += ["minilm_b", "minilm_u"]
    for leg in legs:
        cell = table[leg]
        for key in ("rps", "p50_us", "p99_us"):
            assert _is_number(cell[key]) and cell[key] > 0, (leg, key, cell)
        assert cell["failed"] == 0, (leg, cell)
    for plugin in {leg[:-2] for leg in legs}:
        assert _is_number(table[f"{plugin}_ratio"]), table
        # batches really formed on the batched deployment (its size is not a timing)
        assert table[f"{plugin}_b"]["batching"]["batches"] > 0, table[f"{plugin}_b"]
