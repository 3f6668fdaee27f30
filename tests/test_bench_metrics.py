"""benchmarks/bench_metrics.py --quick runs and reports every figure with agreeing values (not a timing test)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "metrics.md"
    proc = subprocess.run([sys.executable, "benchmarks/bench_metrics.py", "--quick", "--repeats", "1", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text == proc.stdout and text.startswith("Machine: ")
    diffs = [float(x) for x in re.findall(r"\|diff\| ([0-9.e+-]+)", text)]
    assert len(diffs) == 2 and max(diffs) < 1e-9  # same values as lifelines and scikit-survival
    for piece in ("Harrell's C, n = 20,000", "Uno's C (tau", "| 100,000 |", "cumulative/dynamic AUC",
                  "| 1,775 | 100 | all (exact) |", "subset of 10,000, scaled", "final test metrics", "of the epoch"):
        assert piece in text, piece
