"""The families end to end: ``survopt-train family=...`` on the default data and on a CSV, ``survopt-predict``
of its curves, the competing-risks path (train on data=competing and on a CSV of cause codes, predict the
CIFs, cause-specific metrics against the cohort's true CIF), refusals, and the family composed with AMP,
EMA, other optimizers and schedulers, resume and DDP."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("logistic_hazard", "pmf", "deephit", "cox_time", "weibull_aft", "lognormal_aft")
ROSSI = ["data=csv", "data.path=pkg://lifelines/datasets/rossi.csv", "data.duration_col=week", "data.event_col=arrest"]
#: A CSV with a clear signal (lifelines' copy of GBSG2, 686 rows split by the app): C about 0.68 for CoxPH.
GBSG2_CSV = ["data=csv", "data.path=pkg://lifelines/datasets/gbsg2.csv", "data.duration_col=time", "data.event_col=cens"]

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def train(run_dir: Path, *overrides: str, check: bool = True, nproc: int = 0) -> subprocess.CompletedProcess:
    launch = [sys.executable] if not nproc else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    proc = subprocess.run([*launch, "scripts/train.py", f"hydra.run.dir={run_dir}", "trainer.progress_bar=false",
                           *overrides], cwd=ROOT, capture_output=True, text=True, timeout=600, env=_env())
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def predict(run_dir: Path, rows: str, out: Path, *flags: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "scripts/predict.py", str(run_dir), rows, "--out", str(out), *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env())
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def metrics_of(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("train_seconds")
    return metrics


def assert_predictions_are_the_runs(run_dir: Path, predictions: Path, columns: dict[str, str]) -> None:
    """survopt-predict's rows equal the run's own test_predictions.csv (``columns``: predict -> run's name)."""
    ours, runs = read(predictions), read(run_dir / "test_predictions.csv")
    assert len(ours) == len(runs)
    for mine, theirs in columns.items():
        a = np.array([float(r[mine]) for r in ours])
        b = np.array([float(r[theirs]) for r in runs])
        np.testing.assert_allclose(a, b, atol=2e-6, err_msg=mine)  # raw cells re-standardized in float32


@pytest.mark.parametrize("data", ["support", "csv"])
@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_from_the_cli_and_predicts_its_curves(tmp_path, family, data):
    """Default data (SUPPORT, its fixed test file) and a CSV (GBSG2 with text columns, split by the app): the
    run scores its test rows with the family's C-index and IBS, and survopt-predict gives the same risk and
    S(t) for those rows as the run's own test_predictions.csv."""
    over = ["trainer.max_epochs=3"] if data == "support" else [*GBSG2_CSV, "trainer.max_epochs=40"]
    proc = train(tmp_path / "run", f"family={family}", *over)
    assert proc.stdout.strip().splitlines()[-1].startswith("test C-index: ")
    m = metrics_of(tmp_path / "run")
    assert m["family"] == family and m["cindex_kind"] == "antolini" and 0.5 < m["test_cindex"] < 1
    assert m["test_cindex_ci"][0] < m["test_cindex"] < m["test_cindex_ci"][1]
    assert 0 < m["test_ibs"] < 0.25 and m["test_ibs_ci"][0] < m["test_ibs"] < m["test_ibs_ci"][1]
    art = json.loads((tmp_path / "run" / "predictor.json").read_text())
    assert art["format"] == "survopt-predictor/3" and art["family"]["family"] == family and "baseline" not in art
    at = m["horizons"]
    if data == "support":
        rows = "pkg://survopt_hydra/datasets/support_test.csv"
    else:  # the run's own test rows of the CSV, as the file holds them (text cells included)
        import pandas as pd

        from survopt_hydra.survival.data import resolve_path
        from survopt_hydra.survival.splits import split_indices

        frame = pd.read_csv(resolve_path(GBSG2_CSV[1].split("=", 1)[1]))
        test_rows = split_indices(frame["cens"].to_numpy(np.float32), (0.7, 0.15, 0.15), 0)[2]  # the app's split
        frame.iloc[test_rows].to_csv(tmp_path / "rows.csv", index=False)
        rows = str(tmp_path / "rows.csv")
    predict(tmp_path / "run", rows, tmp_path / "pred.csv", "--times", ",".join(f"{h:g}" for h in at))
    header = read(tmp_path / "pred.csv")[0]
    assert list(header) == ["row", "risk", *(f"S({h:g})" for h in at)]
    assert_predictions_are_the_runs(tmp_path / "run", tmp_path / "pred.csv",
                                    {"risk": "risk", **{f"S({h:g})": f"surv@{h:g}" for h in at}})


def _true_cause_specific_c(n: int) -> tuple[list[float], object]:
    """The cohort's true CIF on the run's test rows, scored by the library's cause-specific C."""
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.data import load_cohort
    from survopt_hydra.app.schemas import check_app_config
    from survopt_hydra.survival.families import cause_specific_cindex

    cohort = load_cohort(check_app_config(compose_train(["data=competing", f"data.n={n}", "family=deephit"]))["data"])
    truth, test = cohort.extra["truth"], cohort.test
    raw = test.x.double().numpy() * cohort.standardizer.std + cohort.standardizer.mean
    times = np.unique(test.durations.double().numpy())
    cif = truth.true_cif(raw, times)
    return [cause_specific_cindex(cif[:, k - 1], times, test.durations, test.events, k) for k in (1, 2)], cohort


def test_competing_risks_end_to_end(tmp_path):
    """CLI train on data=competing (DeepHit, 2 causes), the cause-specific metrics near the true CIF's, and
    survopt-predict's CIF_k(t) of the test rows equal to the run's own."""
    train(tmp_path / "run", "data=competing", "family=deephit", "trainer.max_epochs=40", "optimizer.lr=3e-3")
    m = metrics_of(tmp_path / "run")
    assert m["causes"] == 2 and m["cindex_kind"] == "cause_specific_mean"
    truth, cohort = _true_cause_specific_c(2000)
    for k in (1, 2):  # the learnt CIF ranks nearly as well as the truth (2,000 rows, 5 features)
        assert truth[k - 1] - 0.06 < m[f"test_cindex_cause{k}"] <= truth[k - 1] + 0.03, (k, m, truth)
        assert 0 < m[f"test_ibs_cause{k}"] < 0.2
    assert m["test_cindex"] == pytest.approx((m["test_cindex_cause1"] + m["test_cindex_cause2"]) / 2, abs=1e-12)
    assert m["test_cindex_ci"][0] < m["test_cindex"] < m["test_cindex_ci"][1]
    at = m["horizons"]
    raw = cohort.test.x.double().numpy() * cohort.standardizer.std + cohort.standardizer.mean
    with (tmp_path / "rows.csv").open("w") as handle:
        handle.write("x0,x1,x2,x3,x4\n" + "".join(",".join(map(repr, r)) + "\n" for r in raw.tolist()))
    times = ",".join(f"{h:g}" for h in at)
    predict(tmp_path / "run", str(tmp_path / "rows.csv"), tmp_path / "pred.csv", "--times", times)
    header = list(read(tmp_path / "pred.csv")[0])
    assert header == ["row", "risk", *(f"CIF_{k}({h:g})" for k in (1, 2) for h in at)]
    assert_predictions_are_the_runs(tmp_path / "run", tmp_path / "pred.csv",
                                    {"risk": "risk", **{f"CIF_{k}({h:g})": f"cif{k}@{h:g}" for k in (1, 2)
                                                        for h in at}})
    runs = read(tmp_path / "run" / "test_predictions.csv")
    for r in runs[:50]:  # S + CIF_1 + CIF_2 = 1 at every horizon
        for h in at:
            total = float(r[f"surv@{h:g}"]) + float(r[f"cif1@{h:g}"]) + float(r[f"cif2@{h:g}"])
            assert total == pytest.approx(1.0, abs=1e-9)


def test_flchain_trains_deephit_as_the_docs_say(tmp_path):
    """The real cohort: scripts/flchain_competing.py writes scikit-survival's offline FLCHAIN with causes
    1..3 (circulatory, cancer, other), and docs/families.md's command trains DeepHit on it: three
    cause-specific C-indices above chance on the held-out rows, the CIFs and S summing to 1."""
    pytest.importorskip("sksurv")
    path = tmp_path / "flchain_cr.csv"
    subprocess.run([sys.executable, "scripts/flchain_competing.py", str(path)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    rows = read(path)
    codes = [int(float(r["cause"])) for r in rows]
    assert len(rows) == 7874 and [codes.count(k) for k in (1, 2, 3)] == [745, 567, 857]
    train(tmp_path / "run", "data=csv", f"data.path={path}", "data.duration_col=futime", "data.event_col=cause",
          "data.causes=3", "data.missing=impute", "family=deephit", "trainer.max_epochs=8")
    m = metrics_of(tmp_path / "run")
    assert m["causes"] == 3 and all(0.55 < m[f"test_cindex_cause{k}"] < 1 for k in (1, 2, 3)), m
    at = m["horizons"]
    for r in read(tmp_path / "run" / "test_predictions.csv")[:50]:
        for h in at:
            total = float(r[f"surv@{h:g}"]) + sum(float(r[f"cif{k}@{h:g}"]) for k in (1, 2, 3))
            assert total == pytest.approx(1.0, abs=1e-9)


def test_competing_risks_from_a_csv_of_cause_codes(tmp_path):
    """A CSV whose event column holds causes 0/1/2: family=deephit with data.causes=2 trains; without
    data.causes, or with a single-risk family, the run is refused in one line and writes nothing."""
    from survopt_hydra.survival import make_competing_risks

    cohort = make_competing_risks(800, seed=5)
    path = tmp_path / "cr.csv"
    with path.open("w") as handle:
        handle.write("time,status,a,b,c,d,e\n")
        for t, code, x in zip(cohort.durations.tolist(), cohort.events.tolist(), cohort.x.tolist()):
            handle.write(",".join(map(repr, [t, code, *x])) + "\n")
    data = ["data=csv", f"data.path={path}", "data.duration_col=time", "data.event_col=status"]
    refused = train(tmp_path / "no_causes", *data, "family=deephit", check=False)
    assert refused.returncode == 2 and "allowed: 0, 1 (codes of competing causes need data.causes=<K> and " \
                                       "family=deephit)" in refused.stderr
    assert not (tmp_path / "no_causes").exists()
    refused = train(tmp_path / "cox", *data, "data.causes=2", check=False)
    assert refused.returncode == 2 and "error: data.causes: 2 competing causes need family=deephit" in refused.stderr
    assert refused.stderr.count("\n") == 1 and not (tmp_path / "cox").exists()
    train(tmp_path / "run", *data, "data.causes=2", "family=deephit", "trainer.max_epochs=5")
    m = metrics_of(tmp_path / "run")
    assert m["causes"] == 2 and 0.5 < m["test_cindex_cause1"] < 1 and 0.5 < m["test_cindex_cause2"] < 1


def test_an_aft_family_is_refused_for_durations_of_zero_before_anything_is_written(tmp_path):
    path = tmp_path / "zero.csv"
    rng = np.random.default_rng(0)
    rows = [f"{0 if i == 7 else rng.integers(1, 100)},{int(rng.random() < 0.6)},{rng.normal():.4f}" for i in range(200)]
    path.write_text("time,event,x\n" + "\n".join(rows) + "\n")
    proc = train(tmp_path / "run", "data=csv", f"data.path={path}", "family=weibull_aft", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "family=weibull_aft cannot use the training rows: weibull_aft: durations must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("groups", [
    ["amp=bf16", "ema=ema", "ema.decay=0.9", "scheduler=onecycle", "scheduler.interval=step", "clipping=adaptive",
     "trainer.accumulate_grad_batches=2"],
    ["optimizer=sgd", "optimizer.lr=0.1", "optimizer.momentum=0.9", "scheduler=warmup_cosine",
     "scheduler.warmup_epochs=1"],
], ids=["amp-ema-onecycle-agc-accumulate", "sgd-warmup"])
def test_a_family_composes_with_the_other_groups(tmp_path, groups):
    proc = train(tmp_path / "run", "family=deephit", "trainer.max_epochs=5", *groups)
    m = metrics_of(tmp_path / "run")
    assert 0.55 < m["test_cindex"] < 1 and m["optimizer_steps"] > 0 and m["nonfinite_steps"] == 0, m
    assert "test C-index" in proc.stdout


@pytest.mark.parametrize("family", ["cox_time", "deephit"])
def test_a_family_run_stopped_and_rerun_ends_where_an_uninterrupted_one_does(tmp_path, family):
    """Cox-Time draws its controls from the per-epoch seeded stream: a resumed run draws the same ones."""
    run = [f"family={family}", "trainer.max_epochs=4", "trainer.checkpoint_every=1", *ROSSI]
    train(tmp_path / "full", *run)
    train(tmp_path / "resumed", *run, "trainer.stop_after_epochs=2")
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    train(tmp_path / "resumed", *run)
    assert metrics_of(tmp_path / "full") == metrics_of(tmp_path / "resumed")


@pytest.mark.parametrize("family", ["cox_time", "weibull_aft"])
def test_a_family_trains_under_ddp(tmp_path, family):
    """Two ranks (gloo): every rank scores the same validation rows (Cox-Time: every rank all of them), only
    rank 0 writes, and the test C-index is that of a single process within a few points."""
    run = [f"family={family}", "trainer.max_epochs=30"]
    train(tmp_path / "one", *run)
    proc = train(tmp_path / "ddp", *run, "distributed=ddp", nproc=2)
    single, ddp = metrics_of(tmp_path / "one"), metrics_of(tmp_path / "ddp")
    assert ddp["world_size"] == 2 and abs(single["test_cindex"] - ddp["test_cindex"]) <= 0.03, (single, ddp)
    assert proc.stdout.count("test C-index:") == 1
    assert json.loads((tmp_path / "ddp" / "predictor.json").read_text())["family"]["family"] == family


def test_the_tuning_preset_chooses_a_family_on_validation_folds(tmp_path):
    """survopt-tune --families: the choice is the trial with the best validation figure, its bags are saved
    as ensembles survopt-predict serves, and every figure of the result is there."""
    out = tmp_path / "tune"
    proc = subprocess.run([sys.executable, "scripts/tune.py", "data=gbsg2", "trainer.max_epochs=8", "--families",
                           "cox,weibull_aft,pmf", "--trials", "4", "--folds", "2", "--final-seeds", "0",
                           "--jobs", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    trials = read(out / "trials.csv")
    complete = [t for t in trials if t["pruned"] == "False"]
    best = max(complete, key=lambda t: float(t["value"]))
    assert result["chosen_overrides"] == best["overrides"].split(" ")
    family = next((o.split("=")[1] for o in result["chosen_overrides"] if o.startswith("family=")), None)
    assert family in ("cox", "weibull_aft", "pmf") and result["family"] == family
    assert {t["overrides"].split(" ")[0] for t in trials} <= {"family=cox", "family=weibull_aft", "family=pmf"}
    assert 0 < result["test_ibs_mean"] < 0.3 and len(result["test_curve_cindex_runs"]) == 1
    predict(out / "ensemble_seed0", "pkg://lifelines/datasets/gbsg2.csv", tmp_path / "ens.csv", "--times", "365")
    assert list(read(tmp_path / "ens.csv")[0]) == ["row", "risk", "S(365)"]


def test_the_python_estimator_trains_a_family_as_the_cli_does(tmp_path):
    """DeepCoxRegressor(family=...) runs the CLI's training path: the same run, so its survival curves are
    the CLI's test_predictions.csv, its score the CLI's test C-index (Antolini's) and its interval the CLI's."""
    pd = pytest.importorskip("pandas")
    from sksurv.util import Surv

    from survopt_hydra.app import DeepCoxRegressor
    from survopt_hydra.survival.data import resolve_path

    df = pd.read_csv(resolve_path("pkg://lifelines/datasets/gbsg2.csv"))
    train_rows, test_rows = df.iloc[:520], df.iloc[520:].reset_index(drop=True)
    train_rows.to_csv(tmp_path / "train.csv", index=False)
    test_rows.to_csv(tmp_path / "test.csv", index=False)
    train(tmp_path / "cli", "data=csv", f"data.path={tmp_path / 'train.csv'}", f"data.test_path={tmp_path / 'test.csv'}",
          "data.duration_col=time", "data.event_col=cens", "family=deephit", "family.n_cuts=10", "trainer.max_epochs=8")
    m = metrics_of(tmp_path / "cli")
    est = DeepCoxRegressor(family={"name": "deephit", "n_cuts": 10}, trainer={"max_epochs": 8},
                           data={"duration_col": "time", "event_col": "cens"})
    y = lambda d: Surv.from_arrays(d["cens"].astype(bool), d["time"])  # noqa: E731
    est.fit(train_rows.drop(columns=["time", "cens"]), y(train_rows))
    X = test_rows.drop(columns=["time", "cens"])
    assert est.val_cindex_ == m["val_cindex"] and est.best_epoch_ == m["best_epoch"]
    assert est.score(X, y(test_rows)) == pytest.approx(m["test_cindex"], abs=1e-12)
    assert est.score_interval(X, y(test_rows)) == pytest.approx([m["test_cindex"], *m["test_cindex_ci"]], abs=1e-12)
    cli = read(tmp_path / "cli" / "test_predictions.csv")
    np.testing.assert_allclose(est.predict(X), [float(r["risk"]) for r in cli], atol=1e-12)
    fns = est.predict_survival_function(X)
    for h in m["horizons"]:  # the family's own curve between training times, read at h
        at_h = est._curves(X, [h])[:, 0]
        np.testing.assert_allclose(at_h, [float(r[f"surv@{h:g}"]) for r in cli], atol=1e-12)
        assert all(0 <= f(h) <= 1 for f in fns[:5])
