"""End-to-end tests of the real ``survopt-train`` app, run as a subprocess like a user would."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"^test C-index: (0\.\d{4}|1\.0000) \(95% CI (\d\.\d{3})-(\d\.\d{3})\) "
                     r"\(best epoch (\d+), val C-index (0\.\d{4}|1\.0000)\)$")
QUICK = ["trainer.max_epochs=3"]

pytestmark = pytest.mark.slow


def train(run_dir: Path, *overrides: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run([sys.executable, "scripts/train.py", f"hydra.run.dir={run_dir}", *overrides],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read_csv(path: Path, drop: tuple[str, ...] = ()) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(handle)]


def metrics_of(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("train_seconds")  # wall time: the only figure allowed to differ between runs
    return metrics


def hydra_config(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())


def test_default_run_writes_outputs_and_summary(tmp_path: Path) -> None:
    proc = train(tmp_path, "trainer.max_epochs=5")
    last = proc.stdout.strip().splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, last
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"test_cindex", "val_cindex", "best_epoch", "epochs_run", "train_seconds"} <= set(metrics)
    assert float(match.group(1)) == pytest.approx(metrics["test_cindex"], abs=5e-5)
    lo, hi = metrics["test_cindex_ci"]  # the bootstrap interval, as printed
    assert (float(match.group(2)), float(match.group(3))) == pytest.approx((lo, hi), abs=5e-4)
    assert lo < metrics["test_cindex"] < hi and hi - lo < 0.1  # 1,775 test patients: a few points wide
    assert metrics["bootstrap_resamples"] == 1000 and metrics["bootstrap_seed"] == 0
    assert int(match.group(4)) == metrics["best_epoch"] and metrics["epochs_run"] == 5
    assert 0.5 < metrics["test_cindex"] < 1.0
    rows = read_csv(tmp_path / "epochs.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert {"train_loss", "val_cindex", "val_loss", "lr/default", "seconds"} <= set(rows[0])
    for name in ("last.pt", "best.pt", "lr_steps.csv", "monitors.csv", "metrics.csv", "test_predictions.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "tb").exists()  # opt-in: trainer.plots/tensorboard
    assert "Traceback" not in proc.stderr


def test_overrides_take_effect(tmp_path: Path) -> None:
    train(tmp_path, "optimizer=sgd", "optimizer.lr=0.01", "trainer.max_epochs=2")
    cfg = hydra_config(tmp_path)
    assert cfg["optimizer"]["name"] == "sgd" and cfg["optimizer"]["lr"] == 0.01
    assert cfg["trainer"]["max_epochs"] == 2
    rows = read_csv(tmp_path / "epochs.csv")
    assert len(rows) == 2 and float(rows[0]["lr/default"]) == pytest.approx(0.01)
    assert float(rows[1]["lr/default"]) < 0.01  # the default cosine schedule decays it


@pytest.mark.parametrize(
    "preset, expect",
    [("finetune", {"optimizer.lr": 1e-5, "scheduler.name": "warmup_cosine", "scheduler.warmup_fraction": 0.05}),
     ("large_model", {"optimizer.lr": 3e-3, "optimizer.if_supported": {"betas": [0.9, 0.95]},
                      "scheduler.eta_min": 1e-6})],
)
def test_presets_take_effect(tmp_path: Path, preset: str, expect: dict) -> None:
    train(tmp_path, f"+preset={preset}", "trainer.max_epochs=6")
    cfg = hydra_config(tmp_path)
    for key, value in expect.items():
        group, field = key.split(".")
        assert cfg[group][field] == value, key
    first_lr = float(read_csv(tmp_path / "epochs.csv")[0]["lr/default"])
    warm = cfg["scheduler"]["warmup_epochs"] > 0 or cfg["scheduler"].get("warmup_fraction") is not None
    assert first_lr == pytest.approx(expect["optimizer.lr"] * (0.01 if warm else 1.0))
    import torch

    groups = torch.load(tmp_path / "last.pt", weights_only=True)["engine"]["optimizer"]["param_groups"]
    want_betas = (0.9, 0.95) if preset == "large_model" else (0.9, 0.999)  # if_supported reached AdamW
    assert all(tuple(g["betas"]) == pytest.approx(want_betas) for g in groups)


def test_multirun_and_sweep_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "scripts/train.py", "-m", "optimizer.lr=1e-3,3e-3", *QUICK,
                           f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert all((sweep / job / "metrics.json").exists() for job in ("0", "1"))
    assert all(json.loads((sweep / job / "status.json").read_text()) == {"status": "ok"} for job in ("0", "1"))
    report = subprocess.run([sys.executable, "scripts/sweep_report.py", str(sweep)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    rows = read_csv(sweep / "sweep_report.csv")
    assert [float(r["optimizer.lr"]) for r in rows] == [1e-3, 3e-3]
    assert all(float(r["test_cindex"]) > 0 for r in rows)
    assert "(best val)" in (sweep / "sweep_report.md").read_text()
    assert (sweep / "sweep_report.png").stat().st_size > 0


def _assert_same_run(a: Path, b: Path) -> None:
    assert metrics_of(a) == metrics_of(b)
    assert read_csv(a / "epochs.csv", drop=("seconds",)) == read_csv(b / "epochs.csv", drop=("seconds",))
    assert read_csv(a / "lr_steps.csv") == read_csv(b / "lr_steps.csv")
    assert (a / "monitors.csv").read_text() == (b / "monitors.csv").read_text()


def test_stop_and_rerun_resumes_to_identical_metrics(tmp_path: Path) -> None:
    run = ["trainer.max_epochs=8", "trainer.log_interval=2", "optimizer.lr=3e-3"]
    train(tmp_path / "full", *run)
    stopped = train(tmp_path / "resumed", *run, "trainer.stop_after_epochs=3")
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    assert len(read_csv(tmp_path / "resumed" / "epochs.csv")) == 3
    assert not SUMMARY.match((stopped.stdout.strip().splitlines() or [""])[-1])
    train(tmp_path / "resumed", *run)
    _assert_same_run(tmp_path / "full", tmp_path / "resumed")


def test_finished_run_reports_again_and_changed_config_is_refused(tmp_path: Path) -> None:
    first = train(tmp_path, *QUICK)
    before = (tmp_path / "metrics.json").read_text()
    again = train(tmp_path, *QUICK)
    assert again.stdout.strip().splitlines()[-1] == first.stdout.strip().splitlines()[-1]
    assert (tmp_path / "metrics.json").read_text() == before
    changed = train(tmp_path, *QUICK, "optimizer.lr=1e-1", check=False)
    assert changed.returncode == 2, changed.stderr
    assert "different config" in changed.stderr and "optimizer.lr" in changed.stderr


def test_sigkill_and_rerun_resumes_to_identical_metrics(tmp_path: Path) -> None:
    """last.pt on a wall-clock cadence (trainer.checkpoint_every_s): killed after its first
    time-based write, the rerun replays the epochs since and ends bit-identical."""
    run = ["trainer.max_epochs=80", "trainer.early_stopping_patience=null", "trainer.log_interval=5",
           "trainer.checkpoint_every_s=0.5"]
    train(tmp_path / "full", *run)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "scripts/train.py", f"hydra.run.dir={killed}", *run], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (killed / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it could be killed"
    train(killed, *run)
    _assert_same_run(tmp_path / "full", killed)


def _write_csv(path: Path, rows: list[list[object]], header: tuple[str, ...] = ("time", "event", "age", "stage")) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _cohort(n: int, seed: int) -> list[list[object]]:
    rng = np.random.default_rng(seed)
    age = rng.normal(60, 10, n)
    stage = rng.choice(["I", "II", "III"], n)
    hazard = np.exp(0.05 * (age - 60) + np.select([stage == "II", stage == "III"], [0.5, 1.0], 0.0))
    t, c = rng.exponential(1 / hazard), rng.exponential(1.5, n)
    return [[round(min(a, b), 4), int(a <= b), round(g, 1), s] for a, b, g, s in zip(t, c, age, stage)]


BAD_FILES = {
    "missing_file": (None, "file not found"),
    "missing_column": ([[1.0, 1, 50]], "column 'stage' not found"),
    "non_numeric": ([[1.0, 1, 50, "I"], ["soon", 1, 60, "II"]], "non-numeric value 'soon'"),
    "negative_duration": ([[1.0, 1, 50, "I"], [-2.0, 1, 60, "II"]], "negative duration"),
    "bad_event": ([[1.0, 1, 50, "I"], [2.0, 2, 60, "II"]], "event value '2'"),
    "no_events": ([[1.0, 0, 50, "I"], [2.0, 0, 60, "II"]], "no events"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_data_file_is_refused_with_one_line(tmp_path: Path, case: str) -> None:
    rows, expected = BAD_FILES[case]
    path = tmp_path / f"{case}.csv"
    if rows is not None:
        header = ("time", "event", "age") if case == "missing_column" else ("time", "event", "age", "stage")
        _write_csv(path, rows, header)
    overrides = ["data=csv", f"data.path={path}"] + (["data.feature_cols=[age,stage]"] if case == "missing_column" else [])
    run_dir = tmp_path / "run"
    proc = train(run_dir, *overrides, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0] and path.name in lines[0]
    assert "Traceback" not in proc.stderr
    assert not any((run_dir / name).exists() for name in ("last.pt", "metrics.json", "epochs.csv"))


def test_bad_config_value_is_one_line_and_keeps_previous_results(tmp_path: Path) -> None:
    train(tmp_path, *QUICK)
    before = (tmp_path / "metrics.json").read_text()
    proc = train(tmp_path, *QUICK, "trainer.batch_size=0", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: trainer.batch_size: must be >= 1, got 0"
    proc = train(tmp_path, *QUICK, "data.path=/nonexistent.csv", check=False)
    assert proc.returncode == 2 and "/nonexistent.csv" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "metrics.json").read_text() == before


def test_csv_with_external_test_cohort(tmp_path: Path) -> None:
    train_csv = _write_csv(tmp_path / "train.csv", _cohort(300, 0))
    test_csv = _write_csv(tmp_path / "test.csv", _cohort(120, 1))
    run_dir = tmp_path / "run"
    train(run_dir, "data=csv", f"data.path={train_csv}", f"data.test_path={test_csv}", "trainer.max_epochs=15",
          "data.val_fraction=0.2")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_test"] == 120 and metrics["test_source"] == str(test_csv)
    assert metrics["n_train"] + metrics["n_val"] == 300
    assert metrics["test_cindex"] > 0.6  # the hazard depends on age and stage


def test_images_cnn_bf16(tmp_path: Path) -> None:
    train(tmp_path, "data=synthetic_images", "model=cnn", "amp=bf16", "data.n=128", "data.size=16",
          "trainer.max_epochs=2", "trainer.batch_size=32", "+preset=finetune", "scheduler.warmup_epochs=1",
          "scheduler.warmup_fraction=null")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and 0.0 <= metrics["test_cindex"] <= 1.0
    groups = {k for k in read_csv(tmp_path / "epochs.csv")[0] if k.startswith("lr/")}
    assert "lr/backbone.*" in groups  # finetune's lower-LR backbone group


def test_divergence_stops_with_clear_message(tmp_path: Path) -> None:
    proc = train(tmp_path, "optimizer=sgd", "optimizer.lr=1e30", "clipping=none", "trainer.max_nonfinite_steps=3",
                 "trainer.max_epochs=20", check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: training diverged: 3 optimizer steps in a row")
    assert "Traceback" not in proc.stderr


def test_finetune_preset_on_a_cnn_without_weights_warns_in_one_line(tmp_path: Path) -> None:
    """+preset=finetune with model=cnn and no model.pretrained: one warning line naming the key, then the run."""
    proc = train(tmp_path, "+preset=finetune", "data=synthetic_images", "data.n=64", "model=cnn",
                 "trainer.max_epochs=6")
    warnings = [line for line in proc.stderr.splitlines() if "model.pretrained" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: model.pretrained: unset"), proc.stderr
    assert "pkg://survopt_hydra/app/pretrained/cnn_synthetic32.pt" in warnings[0]
    assert SUMMARY.match(proc.stdout.strip().splitlines()[-1])


def test_finetune_warning_rule() -> None:
    """The documented rule on composed configs: a backbone LR multiplier < 1 needs pretrained weights."""
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.rules import warn_finetune_without_weights as rule

    weights = "model.pretrained=pkg://survopt_hydra/app/pretrained/cnn_synthetic32.pt"
    assert "model=mlp has no pretrained weights" in rule(compose_train(["+preset=finetune"]))
    assert rule(compose_train(["+preset=finetune", "model=cnn", "data=synthetic_images"])).startswith(
        "warning: model.pretrained:")
    assert rule(compose_train(["+preset=finetune", "model=cnn", "data=synthetic_images", weights])) is None
    assert rule(compose_train([])) is None and rule(compose_train(["+preset=large_model"])) is None
    assert rule(compose_train(["model=cnn", "data=synthetic_images", "+optimizer.lr_mult={backbone.*: 2.0}"])) is None


def test_default_run_imports_no_plotting_and_plot_run_draws_afterwards(tmp_path: Path) -> None:
    """A default in-process run in a fresh interpreter imports neither matplotlib nor tensorboard;
    scripts/plot_run.py then draws the four PNGs from the run dir's CSVs."""
    code = ("import sys; from pathlib import Path; from survopt_hydra.app.compose import compose_train; "
            "from survopt_hydra.app.trainer import train; "
            f"train(compose_train(['trainer.max_epochs=3', 'trainer.progress_bar=false']), Path({str(tmp_path)!r})); "
            "print(sorted(m for m in ('matplotlib', 'tensorboard', 'torch.utils.tensorboard') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert not list(tmp_path.glob("*.png"))
    proc = subprocess.run([sys.executable, "scripts/plot_run.py", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = ("curves.png", "lr_schedule.png", "calibration.png", "risk_groups.png")
    assert proc.stdout.split() == [str(tmp_path / n) for n in names]
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    proc = subprocess.run([sys.executable, "scripts/plot_run.py", str(tmp_path / "nothing")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "no epochs.csv" in proc.stderr
