"""benchmarks/bench_scale.py --quick runs the app on generated CSV and Parquet cohorts and reports every phase,
peer and target row (not a timing test: the figures are whatever this machine gives)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_reports_phases_targets_and_the_same_model_on_both_formats(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "benchmarks/bench_scale.py", "--quick", "--quiet-wait", "0", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "scale-quick.json").read_text())
    text = (tmp_path / "scale-quick.md").read_text()
    runs = {(r["n"], r["format"]): r for r in result["runs"]}
    assert set(runs) == {(n, f) for n in result["sizes"] for f in ("csv", "parquet")}
    for (n, _), run in runs.items():
        assert run["n_train"] > 0.6 * n and run["wall_s"] >= sum(run["groups"].values()) * 0.95
        assert set(run["groups"]) >= {"start-up", "load", "training", "validation", "final metrics", "writes"}
    for n in result["sizes"]:  # one file's rows in two formats: the same split, model and test C-index
        assert runs[n, "csv"]["test_cindex"] == pytest.approx(runs[n, "parquet"]["test_cindex"], abs=1e-6)
    for piece in ("| patients | format | wall |", "Targets (issue 27)", "loader / pyarrow", "Growth with n",
                  "![time against n](scale-quick.png)"):
        assert piece in text, piece
    assert (tmp_path / "scale-quick.png").stat().st_size > 1000
