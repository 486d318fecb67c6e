"""bench/compare_revisions.py on its quick plan, the committed HEAD against this checkout, so it
cannot rot.

This asserts that both sides ran, each side's replicas ran its own interpreter, every figure
is a number and the tables were written; it never asserts a timing or a ratio: a benchmark
is not a test (bench/README.md).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # two servers, about a minute


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode != 0:
        pytest.skip("not a git checkout: there is no revision to compare against")
    out = tmp_path_factory.mktemp("compare-out")
    work = tmp_path_factory.mktemp("compare-work")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.compare_revisions", "--rev", "HEAD", "--quick"]
        + ["--out", str(out), "--work-dir", str(work)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # everything it started is gone with its temp folder
    assert list(work.iterdir()) == []
    return {
        "json": json.loads((out / "compare-HEAD.json").read_text()),
        "md": (out / "compare-HEAD.md").read_text(),
    }


def test_each_side_runs_its_own_interpreter_in_server_and_replicas(
    quick_run: dict[str, Any],
) -> None:
    baseline, head = quick_run["json"]["sides"]
    assert baseline["python"].endswith("/venv-baseline/bin/python")
    assert baseline["src"].endswith("/tree-baseline/src")
    assert head["python"] == sys.executable
    for side in (baseline, head):
        assert side["replica_argv"].startswith(f"{side['python']} -I -m plughost.")


def test_every_figure_is_a_number_on_both_sides(quick_run: dict[str, Any]) -> None:
    summary = quick_run["json"]["summary"]
    assert summary
    for key, cell in summary.items():
        for side in ("baseline", "head"):
            assert _is_number(cell[side]["median"]), (key, side, cell)
        assert cell["verdict"] in ("within noise", "head better", "head worse"), (key, cell)
    assert summary["infer_rps"]["baseline"]["median"] > 0
    assert summary["failed"]["baseline"]["median"] == 0
    assert summary["failed"]["head"]["median"] == 0


def test_rounds_alternate_sides(quick_run: dict[str, Any]) -> None:
    rows = quick_run["json"]["rows"]
    assert len(rows) >= 6
    assert [r["side"] for r in rows[:4]] == ["baseline", "head", "baseline", "head"]


def test_markdown_has_the_sides_and_the_ratio_table(quick_run: dict[str, Any]) -> None:
    md = quick_run["md"]
    assert md.startswith("# plughost ")
    assert "| figure | better |" in md and "head / baseline" in md
    assert "quick plan: a smoke setting, not a measurement" in md
