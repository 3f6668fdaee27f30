"""Sweeps through the real app: what a sweeper receives, and the parallel launcher.

* No sweeper ever receives a test figure: a Hydra callback records each job's
  ``JobReturn.return_value`` (what Optuna & co. optimize) in a multirun of ``scripts/train.py``;
  it must equal the job's validation figure in ``metrics.json`` and differ from its test figure.
* ``hydra/launcher=survopt_parallel`` (Hydra's joblib launcher, one process per core) gives
  the same metrics as the sequential basic launcher, job for job.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "sweep_helpers"
SWEEP = ["data=gbsg2", "trainer.max_epochs=8", "trainer.progress_bar=false"]


def multirun(sweep_dir: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HELPERS), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "scripts/train.py", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def job_metrics(sweep_dir: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "metrics.json").read_text()) for d in sorted(sweep_dir.iterdir()) if d.is_dir()}


@pytest.mark.slow
@pytest.mark.parametrize("monitor", ["val_cindex", "val_loss"])
def test_sweepers_receive_the_validation_figure_never_a_test_figure(tmp_path: Path, monitor: str) -> None:
    proc = multirun(tmp_path, *SWEEP, "optimizer.lr=3e-3,3e-2", f"trainer.monitor={monitor}",
                    "+hydra.callbacks.record._target_=record_return.RecordReturn")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_metrics(tmp_path)
    assert sorted(jobs) == ["0", "1"]
    for name, metrics in jobs.items():
        returned = json.loads((tmp_path / name / "sweeper_value.json").read_text())["return_value"]
        assert returned == metrics[monitor]
        assert returned != metrics["test_cindex"] and returned != metrics["test_loss"]


@pytest.mark.slow
def test_parallel_launcher_gives_the_sequential_results(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install survopt-hydra[parallel]")
    lrs = "optimizer.lr=1e-3,3e-3,1e-2,3e-2"
    seq = multirun(tmp_path / "seq", *SWEEP, lrs)
    par = multirun(tmp_path / "par", *SWEEP, lrs, "hydra/launcher=survopt_parallel", "hydra.launcher.n_jobs=2")
    assert seq.returncode == 0, seq.stderr[-3000:]
    assert par.returncode == 0, par.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in par.stdout + par.stderr  # it did use the joblib launcher
    a, b = job_metrics(tmp_path / "seq"), job_metrics(tmp_path / "par")
    assert sorted(a) == sorted(b) == ["0", "1", "2", "3"]
    timing = {"train_seconds"}
    for job in a:
        assert {k: v for k, v in a[job].items() if k not in timing} == {k: v for k, v in b[job].items() if k not in timing}
        for name in ("epochs.csv", "lr_steps.csv"):
            seq_rows = (tmp_path / "seq" / job / name).read_text().splitlines()
            par_rows = (tmp_path / "par" / job / name).read_text().splitlines()
            assert len(seq_rows) == len(par_rows)
    assert len({a[j]["val_cindex"] for j in a}) > 1  # four different LRs: four different runs


@pytest.mark.slow
def test_a_diverged_job_is_failed_and_never_best(tmp_path: Path) -> None:
    """Issue 25 item 7: an exploding training loss (lr 1e9, no clipping: 1.7e19 against 5.7) ends the job as
    failed (exit 1, status.json), the sweep says so, and sweep_report never ranks it."""
    proc = multirun(tmp_path, "data=gbsg2", "trainer.max_epochs=3", "clipping=none", "optimizer.lr=1e9,1e-2")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 of 2 sweep jobs failed" in proc.stderr and "training diverged" in proc.stderr
    status = {j: json.loads((tmp_path / j / "status.json").read_text()) for j in ("0", "1")}
    assert status["0"]["status"] == "failed" and status["0"]["exit_code"] == 1
    assert "over 100 x the first epoch's" in status["0"]["error"] and status["1"] == {"status": "ok"}
    from survopt_hydra.app.tools import sweep_report

    jobs = sweep_report.collect(tmp_path)
    assert [j["status"] for j in jobs] == ["failed (exit 1)", "done"]
    assert sweep_report.best_by_validation(jobs)["job"] == "1"
