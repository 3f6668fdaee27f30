"""benchmarks/readme_figures.py prints the figure the README's command prints (it trains in-process)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_table_row_equals_the_cli_summary_line(tmp_path: Path) -> None:
    out = tmp_path / "figures.md"
    proc = subprocess.run([sys.executable, "benchmarks/readme_figures.py", "--only", "gbsg2", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_text() == proc.stdout and proc.stdout.startswith("Machine: ")
    [row] = [line for line in proc.stdout.splitlines() if line.startswith("| GBSG2 ")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "`data=gbsg2`" and all(re.fullmatch(r"0\.\d{4}", c) for c in (cells[2], cells[3], *cells[5:8]))
    cli = subprocess.run([sys.executable, "scripts/train.py", "data=gbsg2", f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]
    summary = cli.stdout.strip().splitlines()[-1]
    lo, hi = json.loads((tmp_path / "run" / "metrics.json").read_text())["test_cindex_ci"]
    assert summary == f"test C-index: {cells[2]} (95% CI {lo:.3f}-{hi:.3f}) (best epoch {cells[4]}, " \
                      f"val C-index {cells[3]})"
