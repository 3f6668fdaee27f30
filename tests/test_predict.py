"""``survopt-predict``: a run dir + a CSV -> risks and S(t|x), exactly as the run scored its test rows."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from survopt_hydra.survival.data import DataError, resolve_path
from survopt_hydra.survival.metrics import concordance_index

pytestmark = pytest.mark.slow  # each module fixture trains a run
ROOT = Path(__file__).resolve().parents[1]
SUPPORT_TEST = resolve_path("pkg://survopt_hydra/datasets/support_test.csv")
LUNG = "pkg://lifelines/datasets/lung.csv"


def run(run_dir: Path, *overrides: str) -> dict:
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.trainer import train

    return train(compose_train(["trainer.max_epochs=4", "trainer.progress_bar=false", *overrides]), run_dir)


@pytest.fixture(scope="module")
def support_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("support")
    return d, run(d, "trainer.plots=true", "trainer.tensorboard=true")


@pytest.fixture(scope="module")
def gbsg2_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("gbsg2")
    return d, run(d, "data=gbsg2", "model=linear")


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def predict(run_dir, rows_csv, tmp_path, **kw):
    from survopt_hydra.app.predict import predict_file

    out, n = predict_file(run_dir, rows_csv, tmp_path / f"out{len(list(tmp_path.iterdir()))}.csv", **kw)
    return read(out)


def test_test_rows_reproduce_the_runs_test_cindex_exactly(support_run, tmp_path):
    run_dir, metrics = support_run
    assert json.loads((run_dir / "predictor.json").read_text())["best_epoch"] == metrics["best_epoch"]
    out = predict(run_dir, SUPPORT_TEST, tmp_path, times=[30, 90, 365])
    import pandas as pd

    truth = pd.read_csv(SUPPORT_TEST)
    risk = np.array([float(r["risk"]) for r in out], dtype=np.float32)
    assert [int(r["row"]) for r in out] == list(range(1, len(truth) + 1))
    c = concordance_index(torch.tensor(risk), truth["duration"].to_numpy(), truth["event"].to_numpy())
    assert c == metrics["test_cindex"]  # exactly: same encoding, same float32 standardization, same model
    surv = np.array([[float(r[f"S({t})"]) for t in (30, 90, 365)] for r in out])
    assert (np.diff(surv, axis=1) <= 0).all() and (surv > 0).all() and (surv < 1).all()


def test_survival_matches_a_numpy_breslow_of_the_training_rows(gbsg2_run, tmp_path):
    """model=linear on GBSG2 (categories one-hot): the categorical test rows, written back to a CSV in
    another column order, give the run's test C-index; S(t|x) equals a hand-written Breslow."""
    import pandas as pd

    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.schemas import check_app_config
    from survopt_hydra.app.data import load_cohort
    from survopt_hydra.app.predictor import split_risks
    from survopt_hydra.app.trainer import load_best

    run_dir, metrics = gbsg2_run
    df = pd.read_csv(resolve_path("pkg://lifelines/datasets/gbsg2.csv"))
    from survopt_hydra.app.data import _split

    data = check_app_config(compose_train(["data=gbsg2"]))["data"]
    _, _, te = _split(df["cens"].to_numpy(), (0.7, 0.15, 0.15), data["split_seed"], "x")
    df.iloc[te][list(reversed(df.columns))].to_csv(tmp_path / "test_rows.csv", index=False)
    times = [200.0, 700.0, 1500.0]
    out = predict(run_dir, tmp_path / "test_rows.csv", tmp_path, times=times)
    risk = np.array([float(r["risk"]) for r in out])
    assert concordance_index(torch.tensor(risk, dtype=torch.float32), df["time"].iloc[te].to_numpy(),
                             df["cens"].iloc[te].to_numpy()) == metrics["test_cindex"]
    _, cohort, model, _ = load_best(run_dir)
    r_train = split_risks(model, cohort.train).double().numpy()
    t, e = cohort.train.durations.double().numpy(), cohort.train.events.double().numpy()
    h0 = [sum(e[(t == u)].sum() / np.exp(r_train[t >= u]).sum() for u in np.unique(t[t <= s])) for s in times]
    expected = np.exp(-np.outer(np.exp(risk), h0))
    got = np.array([[float(r[f"S({s:g})"]) for s in times] for r in out])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert metrics["test_ibs"] is not None and 0 < metrics["test_ibs"] < 0.25
    assert len(metrics["test_td_auc"]) == 3 and all(0 < a < 1 for a in metrics["test_td_auc"])


def test_bad_inputs_are_refused_in_one_line_and_leave_no_output(gbsg2_run, tmp_path):
    import pandas as pd

    from survopt_hydra.app.predict import predict_file

    run_dir, _ = gbsg2_run
    df = pd.read_csv(resolve_path("pkg://lifelines/datasets/gbsg2.csv")).head(30)
    cases = {
        "cols": (df.drop(columns=["age", "tgrade"]), "2 columns not found: 'age', 'tgrade'"),
        "unseen": (df.assign(tgrade=["IV"] + list(df.tgrade[1:])),
                   "1 row(s) of column 'tgrade' hold levels not seen in training, first 'IV' at row 1"),
        "inf": (df.assign(pnodes=list(df.pnodes[:4]) + ["inf"] + list(df.pnodes[5:])),
                "non-finite value 'inf' in column 'pnodes' at row 5"),
        "big": (df.assign(age=list(df.age[:2]) + ["1e39"] + list(df.age[3:])), "'age' at row 3 overflows float32"),
        "holes": (df.assign(age=[None, None] + list(df.age[2:]), estrec=[None] + list(df.estrec[1:])),
                  "missing values in 2 column(s): 'age': 2 (first at row 1), 'estrec': 1 (first at row 1); the model "
                  "was trained with data.missing=refuse"),
        "text": (df.assign(age=["old"] + list(df.age[1:])), "non-numeric value 'old' in column 'age' at row 1"),
    }
    for name, (frame, piece) in cases.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        with pytest.raises(DataError) as err:
            predict_file(run_dir, tmp_path / f"{name}.csv", tmp_path / f"{name}.out.csv", [100.0])
        assert piece in str(err.value) and "\n" not in str(err.value), (name, str(err.value))
        assert not (tmp_path / f"{name}.out.csv").exists() and not list(tmp_path.glob(".*.tmp"))
    zero = predict(run_dir, tmp_path / "unseen.csv", tmp_path, unseen="zero")
    assert len(zero) == 30 and all(math.isfinite(float(r["risk"])) for r in zero)


def test_imputing_model_fills_new_rows_with_training_medians(tmp_path):
    run(tmp_path, "data=csv", f"data.path={LUNG}", "data.duration_col=time", "data.event_col=status",
        "data.missing=impute", "data.missing_indicator=true")
    out = predict(tmp_path, resolve_path(LUNG), tmp_path, times=[100.0])
    assert len(out) == 228 and all(math.isfinite(float(r["risk"])) for r in out)


def test_cli_one_line_errors_and_no_silent_overwrite(support_run, tmp_path):
    run_dir, _ = support_run
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}

    def cli(*args):
        return subprocess.run([sys.executable, "scripts/predict.py", *map(str, args)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    new = tmp_path / "new.csv"
    new.write_bytes(SUPPORT_TEST.read_bytes())
    ok = cli(run_dir, new, "--grid", "0:360:5")
    assert ok.returncode == 0, ok.stderr
    out = tmp_path / "new.predictions.csv"
    assert read(out)[0].keys() == {"row", "risk", "S(0)", "S(90)", "S(180)", "S(270)", "S(360)"}
    before = out.read_bytes()
    again = cli(run_dir, new, "--times", "30")
    assert again.returncode == 2 and again.stderr.strip() == f"error: {out}: exists; pass --overwrite to replace " \
        "it, or --out another path"
    assert out.read_bytes() == before
    for args, piece in [((tmp_path / "nope", new), "predictor.json: not found"),
                        ((run_dir, new, "--times", "30,x"), "cannot parse '30,x'"),
                        ((run_dir, tmp_path / "missing.csv"), "input: file not found")]:
        proc = cli(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and piece in lines[0], proc.stderr


def test_run_reports_time_dependent_metrics_and_plots(support_run):
    """metrics.json's Uno's C and td-AUC equal scikit-survival's on the run's own test risks; plots written."""
    sksurv_metrics = pytest.importorskip("sksurv.metrics")
    from sksurv.util import Surv

    from survopt_hydra.app.predictor import split_risks
    from survopt_hydra.app.trainer import load_best

    run_dir, metrics = support_run
    _, cohort, model, _ = load_best(run_dir)
    risk = split_risks(model, cohort.test).double().numpy()
    tr = Surv.from_arrays(cohort.train.events.numpy() > 0, cohort.train.durations.double().numpy())
    te = Surv.from_arrays(cohort.test.events.numpy() > 0, cohort.test.durations.double().numpy())
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["horizons"] == metrics["horizons"] and len(metrics["horizons"]) == 3
    uno = sksurv_metrics.concordance_index_ipcw(tr, te, risk, tau=metrics["uno_tau"])[0]
    assert on_disk["test_uno_cindex"] == pytest.approx(uno, abs=1e-6)
    auc, mean = sksurv_metrics.cumulative_dynamic_auc(tr, te, risk, metrics["horizons"])
    np.testing.assert_allclose(on_disk["test_td_auc"], auc, atol=1e-6)
    assert on_disk["test_td_auc_mean"] == pytest.approx(mean, abs=1e-6)
    assert 0 < on_disk["test_ibs"] < 0.25 and 0 < on_disk["val_ibs"] < 0.25
    # The intervals are the library's bootstrap of these risks (each resample is checked against
    # lifelines / scikit-survival in tests/test_bootstrap.py), with the seed and count metrics.json names.
    from survopt_hydra.survival.bootstrap import bootstrap_intervals
    from survopt_hydra.survival.timedep import uno_weights

    t, e = cohort.test.durations.double().numpy(), cohort.test.events.numpy()
    weights = uno_weights(t, e, cohort.train.durations, cohort.train.events, tau=metrics["uno_tau"])
    ci = bootstrap_intervals(risk, t, e, uno_weights=weights, resamples=on_disk["bootstrap_resamples"],
                             seed=on_disk["bootstrap_seed"])
    assert on_disk["test_cindex_ci"] == pytest.approx(ci["cindex"], abs=1e-12)
    assert on_disk["test_uno_cindex_ci"] == pytest.approx(ci["uno_cindex"], abs=1e-12)
    lo, hi = on_disk["test_ibs_ci"]
    assert lo < on_disk["test_ibs"] < hi and hi - lo < 0.03
    assert on_disk["test_cindex_ci"][0] < on_disk["test_cindex"] < on_disk["test_cindex_ci"][1]
    for name in ("calibration.png", "risk_groups.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_final_metrics_reach_the_csvs_and_tensorboard(support_run):
    """metrics.csv = metrics.json flattened; test_predictions.csv holds the test risks and S(h|x) that
    metrics.json was computed from; TensorBoard holds each epoch's row and the final figures at the best epoch."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from survopt_hydra.app.outputs import flat_metrics
    from survopt_hydra.survival.timedep import uno_cindex

    run_dir, _ = support_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    [row] = read(run_dir / "metrics.csv")
    flat = flat_metrics(metrics)
    assert set(row) == set(flat)
    h = metrics["horizons"]
    assert float(row[f"test_td_auc@{h[1]:g}"]) == metrics["test_td_auc"][1]
    for key in ("test_cindex", "test_uno_cindex", "test_ibs", "val_ibs", "test_td_auc_mean"):
        assert float(row[key]) == metrics[key], key
    preds = read(run_dir / "test_predictions.csv")
    col = lambda k: torch.tensor([float(r[k]) for r in preds], dtype=torch.float64)  # noqa: E731
    assert list(preds[0]) == ["duration", "event", "risk", *(f"surv@{x:g}" for x in h)]
    assert concordance_index(col("risk"), col("duration"), col("event")) == pytest.approx(metrics["test_cindex"],
                                                                                          abs=1e-6)
    from survopt_hydra.app.trainer import load_best

    _, cohort, _, _ = load_best(run_dir)
    train_d, train_e = cohort.train.durations, cohort.train.events
    uno = uno_cindex(col("risk"), col("duration"), col("event"), train_d, train_e, tau=metrics["uno_tau"])
    assert uno == pytest.approx(metrics["test_uno_cindex"], abs=1e-9)
    s = torch.stack([col(f"surv@{x:g}") for x in h], 1)
    assert bool((s[:, 1:] <= s[:, :-1]).all()) and bool(((s > 0) & (s < 1)).all())

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    epochs = read(run_dir / "epochs.csv")
    val = acc.Scalars("val_cindex")
    assert [e.step for e in val] == [int(r["epoch"]) for r in epochs]
    np.testing.assert_allclose([e.value for e in val], [float(r["val_cindex"]) for r in epochs], rtol=1e-6)
    for key in ("test_cindex", "test_uno_cindex", "test_ibs", "test_td_auc_mean", "val_ibs", f"test_td_auc@{h[0]:g}"):
        [event] = acc.Scalars(key)
        assert event.step == metrics["best_epoch"] and event.value == pytest.approx(flat[key], rel=1e-6), key
