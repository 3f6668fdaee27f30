"""The Python API (issue 28 item 3): ``DeepCoxRegressor``, a scikit-learn estimator on the CLI's training path.

References: the CLI itself (``scripts/train.py data=csv`` on the DataFrame written with ``to_csv``:
the same validation C-index, test risks, S(t|x) and bootstrap interval, to the bit), the CSV and
Parquet loaders for the in-memory reading, the CLI's own config composition for the settings,
scikit-learn's real ``Pipeline``/``ColumnTransformer``/``GridSearchCV``/``cross_val_score``/``clone``,
and scikit-survival's ``concordance_index_censored`` and ``StepFunction``.
"""
from __future__ import annotations

import csv
import json
import os
import pickle
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")
pytest.importorskip("pyarrow")

from survopt_hydra.app import DeepCoxRegressor  # noqa: E402
from survopt_hydra.app.compose import compose_train  # noqa: E402
from survopt_hydra.app.data import cohort_from_table, load_cohort  # noqa: E402
from survopt_hydra.survival.frames import survival_table  # noqa: E402
from survopt_hydra.app.rules import check_config  # noqa: E402
from survopt_hydra.app.schemas import MLPModelConfig  # noqa: E402
from survopt_hydra.errors import ConfigError  # noqa: E402
from survopt_hydra.schemas.optimizers import AdamWConfig, SGDConfig  # noqa: E402
from survopt_hydra.survival.data import DataError, load_arrow, load_csv, resolve_path  # noqa: E402
from survopt_hydra.survival.frames import arrow_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEXT_COLS = ["horTh", "menostat", "tgrade"]


def gbsg2(noise_seed: int = 1) -> "pd.DataFrame":
    """GBSG2 (686 patients; three text columns) with ``age`` made a float of many digits, so the CSV
    round trip of full-precision numbers is part of every comparison, and a patient ID column."""
    df = pd.read_csv(resolve_path("pkg://lifelines/datasets/gbsg2.csv"))
    df["age"] = df["age"] + np.random.default_rng(noise_seed).normal(0.0, 1.0, len(df))
    df.insert(0, "patient_id", [f"P{k:04d}" for k in range(len(df))])
    return df


def surv(df: "pd.DataFrame"):
    from sksurv.util import Surv

    return Surv.from_arrays(df["cens"].astype(bool), df["time"], name_event="Status", name_time="Days")


def same_table(a, b) -> None:
    np.testing.assert_array_equal(a.x, b.x)  # NaN in the same places too
    np.testing.assert_array_equal(a.durations, b.durations)
    np.testing.assert_array_equal(a.events, b.events)
    assert a.feature_names == b.feature_names and a.schema.to_dict() == b.schema.to_dict()


def test_without_scikit_learn_the_import_names_the_extra(monkeypatch):
    import survopt_hydra.app as app

    monkeypatch.delitem(sys.modules, "survopt_hydra.app.estimator")
    for name in ("sklearn", "sklearn.base"):  # what an environment without it imports
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'^DeepCoxRegressor needs scikit-learn, which is not installed: '
                                          r'pip install "survopt-hydra\[sklearn\]"$'):
        app.DeepCoxRegressor


# ================================================================== reading a DataFrame (fast)
@pytest.mark.parametrize("missing", ["drop_rows", "impute"])
def test_a_dataframe_reads_exactly_as_its_csv(tmp_path, missing):
    """Numbers, text (with spaces and a missing level), integers and missing cells: the in-memory table
    gives the CSV loader's features, levels, schema and row numbers."""
    df = gbsg2().drop(columns="patient_id")
    df.loc[3, "age"] = np.nan
    df.loc[5, "tgrade"] = None
    df.loc[7, "menostat"] = "  Post "
    df.loc[9, "horTh"] = "NA"
    df.to_csv(tmp_path / "t.csv", index=False)
    kw = dict(missing=missing, indicator=missing == "impute")
    from_csv = load_csv(tmp_path / "t.csv", "time", "cens", **kw)
    in_memory = load_arrow(arrow_table(df), "time", "cens", label="X", **kw)
    same_table(from_csv, in_memory)
    np.testing.assert_array_equal(from_csv.rows, in_memory.rows)
    assert "tgrade=III" in in_memory.feature_names and in_memory.x.shape[1] == len(in_memory.feature_names)


def test_a_numpy_array_reads_as_a_csv_with_columns_x0_x1(tmp_path):
    rng = np.random.default_rng(0)
    m = np.column_stack([rng.exponential(5, 50), rng.integers(0, 2, 50), rng.normal(size=(50, 3))])
    with (tmp_path / "m.csv").open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["x0", "x1", "x2", "x3", "x4"])
        w.writerows([[repr(v) for v in row] for row in m.tolist()])
    same_table(load_csv(tmp_path / "m.csv", "x0", "x1"), load_arrow(arrow_table(m), "x0", "x1"))


def test_booleans_read_as_parquet_reads_them(tmp_path):
    """A bool column is a 0/1 number, as in the same DataFrame saved as Parquet (a CSV spells it True/False)."""
    df = gbsg2().drop(columns="patient_id")
    df["treated"] = df["horTh"] == "yes"
    df.to_parquet(tmp_path / "t.parquet")
    in_memory = load_arrow(arrow_table(df), "time", "cens")
    same_table(load_csv(tmp_path / "t.parquet", "time", "cens"), in_memory)
    assert "treated" in in_memory.feature_names


def test_a_dataframes_bad_cells_get_the_files_one_line_errors(tmp_path):
    df = gbsg2().drop(columns="patient_id")
    df["tsize"] = df["tsize"].astype(object)
    df.loc[4, "tsize"] = "12 mm"
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError) as from_csv:
        load_csv(tmp_path / "t.csv", "time", "cens")
    with pytest.raises(DataError) as in_memory:
        load_arrow(arrow_table(df), "time", "cens", label="X")
    assert str(in_memory.value) == str(from_csv.value).replace(str(tmp_path / "t.csv"), "X")
    assert "'12 mm'" in str(in_memory.value) and "row 5" in str(in_memory.value)
    with pytest.raises(DataError, match=r"^X: text column 'patient_id' has a different value in every row"):
        load_arrow(arrow_table(gbsg2()), "time", "cens", label="X")
    dated = gbsg2().drop(columns="patient_id").assign(seen=pd.Timestamp("2020-01-01"))
    with pytest.raises(DataError, match=r"^X: column 'seen' holds timestamp\[.*\] values; allowed: numbers"):
        load_arrow(arrow_table(dated), "time", "cens", label="X")


def data_settings(*overrides: str) -> dict:
    return check_config(compose_train(["data=csv", *overrides]))["data"]


def test_cohort_from_table_splits_and_standardizes_as_load_cohort(tmp_path):
    df = gbsg2().drop(columns="patient_id")
    df.iloc[:500].to_csv(tmp_path / "train.csv", index=False)
    df.iloc[500:].to_csv(tmp_path / "test.csv", index=False)
    cols = ["data.duration_col=time", "data.event_col=cens", "data.val_fraction=0.2", "data.split_seed=3"]
    table = arrow_table(df.iloc[:500])
    # with a test split of its own (the CLI without data.test_path)
    files = load_cohort(data_settings(f"data.path={tmp_path / 'train.csv'}", *cols))
    memory = cohort_from_table(data_settings("data.path=X", *cols), table, "X")
    for part in ("train", "val", "test"):
        a, b = getattr(files, part), getattr(memory, part)
        assert (a.x.equal(b.x), a.durations.equal(b.durations), a.events.equal(b.events)) == (True, True, True)
    # no test rows split off (the estimator's): the split of the CLI given a fixed test file
    files = load_cohort(data_settings(f"data.path={tmp_path / 'train.csv'}", f"data.test_path={tmp_path / 'test.csv'}",
                                      *cols))
    memory = cohort_from_table(data_settings("data.path=X", *cols), table, "X", holdout=False)
    assert files.train.x.equal(memory.train.x) and files.val.durations.equal(memory.val.durations)
    assert len(memory.train) + len(memory.val) == 500 and memory.test is memory.val
    np.testing.assert_array_equal(files.standardizer.mean, memory.standardizer.mean)


# ================================================================== y in scikit-survival's forms (fast)
def test_y_in_every_form_gives_the_same_table():
    df = gbsg2().drop(columns="patient_id")
    X = df.drop(columns=["time", "cens"])
    names = ("time", "cens")
    reference, features = survival_table(df, None, names, "fit")
    assert features == list(X.columns)
    for y in (surv(df), (df["time"].to_numpy(), df["cens"].to_numpy()), df[["cens", "time"]]):
        table, found = survival_table(X, y, names, "fit")
        assert found == features
        same_table(load_arrow(table, *names), load_arrow(reference, *names))
    with pytest.raises(DataError, match="has 686 rows but y has 10"):
        survival_table(X, surv(df)[:10], names, "fit")
    with pytest.raises(DataError, match=r"X has a column 'time', the name data.duration_col gives y's durations"):
        survival_table(df.drop(columns="cens"), surv(df), names, "fit")
    with pytest.raises(DataError, match=r"^y: a structured array with the fields"):
        survival_table(X, np.zeros(3, dtype=[("a", bool), ("b", float), ("c", float)]), names, "fit")
    with pytest.raises(DataError, match=r"^y: none given"):
        survival_table(X.to_numpy(), None, names, "fit")


# ================================================================== parameters (fast)
def test_group_parameters_follow_scikit_learns_conventions():
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    adamw = AdamWConfig(lr=1e-3)
    est = DeepCoxRegressor(optimizer=adamw, trainer={"max_epochs": 5})
    deep = est.get_params(deep=True)
    assert deep["optimizer__lr"] == 1e-3 and deep["trainer__max_epochs"] == 5 and "optimizer" in deep
    assert "optimizer__lr" not in est.get_params(deep=False)
    est.set_params(optimizer__lr=3e-3, trainer__batch_size=64)
    assert est.optimizer == AdamWConfig(lr=3e-3) and adamw.lr == 1e-3  # a new object; the user's is untouched
    assert est.trainer == {"max_epochs": 5, "batch_size": 64}
    assert DeepCoxRegressor().set_params(optimizer__lr=0.1).optimizer == {"lr": 0.1}
    assert DeepCoxRegressor(optimizer="sgd").set_params(optimizer__lr=0.1).optimizer == {"name": "sgd", "lr": 0.1}
    assert DeepCoxRegressor(clipping="value").set_params(clipping__clip_value=0.5).clipping == \
        {"mode": "value", "clip_value": 0.5}
    with pytest.raises(ValueError, match="Invalid parameter optimizer__lrr"):
        DeepCoxRegressor(optimizer=AdamWConfig()).set_params(optimizer__lrr=1.0)
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(learning_rate=1.0)
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params() and twin.optimizer is not est.optimizer
    pipe = Pipeline([("cox", DeepCoxRegressor())]).set_params(cox__optimizer__lr=1e-4)
    assert pipe.named_steps["cox"].optimizer == {"lr": 1e-4}
    assert "cox__optimizer__lr" in pipe.get_params(deep=True)


def test_settings_compose_as_the_cli_composes_them():
    """Dicts, dataclasses, option names and override strings give the config the CLI composes from
    the same settings written as command-line overrides."""
    est = DeepCoxRegressor(optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9},
                           clipping={"mode": "value", "clip_value": 0.5},
                           model=MLPModelConfig(hidden=[8, 4], dropout=0.0), scheduler="onecycle",
                           trainer={"max_epochs": 7}, data={"val_fraction": 0.25, "missing": "impute"},
                           overrides=["amp=bf16", "+preset=large_model"])
    cli = compose_train(["data=csv", "optimizer=sgd", "optimizer.lr=0.1", "optimizer.momentum=0.9", "clipping=value",
                         "clipping.clip_value=0.5", "model=mlp", "model.hidden=[8,4]", "model.dropout=0.0",
                         "scheduler=onecycle", "trainer.max_epochs=7", "trainer.resume=false",
                         "data.val_fraction=0.25", "data.missing=impute", "amp=bf16", "+preset=large_model"])
    from omegaconf import OmegaConf

    ours = OmegaConf.to_container(est.compose(), resolve=True)
    theirs = OmegaConf.to_container(cli, resolve=True)
    assert ours["data"].pop("path") == "fit(X, y)" and theirs["data"].pop("path") == "???"  # X is no file
    assert ours == theirs
    assert ours["optimizer"]["name"] == "sgd" and ours["model"]["hidden"] == [8, 4]
    full = OmegaConf.to_container(DeepCoxRegressor(optimizer=AdamWConfig(lr=2e-3)).compose())
    assert full["optimizer"] == {**OmegaConf.to_container(compose_train(["optimizer=adamw"]).optimizer),
                                 "lr": 2e-3, "weight_decay": AdamWConfig().weight_decay}


def test_bad_settings_and_bad_data_are_refused_in_one_line_before_anything_is_written(tmp_path):
    df = gbsg2().drop(columns="patient_id")
    X, y = df.drop(columns=["time", "cens"]), surv(df)
    run = tmp_path / "run"
    cases = [(dict(optimizer={"lrr": 0.1}), ConfigError, r"^optimizer\.lrr: unknown key"),
             (dict(model=AdamWConfig()), ConfigError, r"^model: AdamWConfig is not an option of this group"),
             (dict(data={"path": "cohort.csv"}), ConfigError, r"^data\.path: the estimator trains on fit\(X, y\)"),
             (dict(overrides=["data.test_fraction=0.3"]), ConfigError, r"^data\.test_fraction: "),
             (dict(trainer={"max_epochs": 0}), ConfigError, r"^trainer\.max_epochs"),
             (dict(data={"val_fraction": 0.002}), DataError, r"^fit\(X, y\): the validation split has"),
             (dict(optimizer=3), ConfigError, r"^optimizer: expected None, an option name"),
             (dict(data="gbsg2"), ConfigError, r"^data: 'gbsg2': the estimator's data are X and y"),
             (dict(overrides=["data=gbsg2"]), ConfigError, r"^data: 'data=gbsg2': the estimator's data are X and y")]
    for params, error, pattern in cases:
        with pytest.raises(error, match=pattern) as info:
            DeepCoxRegressor(run_dir=run, **params).fit(X, y)
        assert "\n" not in str(info.value)
        assert not run.exists()
    bad = X.assign(tsize=X["tsize"].astype(object))
    bad.loc[2, "tsize"] = "big"
    with pytest.raises(DataError, match=r"^fit\(X, y\): column 'tsize' is numeric except for 1 of 686 cells, "
                                        r"first 'big' at row 3"):
        DeepCoxRegressor(run_dir=run).fit(bad, y)
    assert not run.exists()


# ================================================================== the CLI's numbers (slow)
def cli_train(run_dir: Path, *overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run([sys.executable, "scripts/train.py", f"hydra.run.dir={run_dir}", *overrides], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def read_frame(path: Path) -> "pd.DataFrame":
    return pd.read_csv(path, float_precision="round_trip")  # pandas' default parser is not exact


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """The CLI on CSV files and the estimator on the same DataFrames, same settings and seed."""
    d = tmp_path_factory.mktemp("parity")
    df = gbsg2().drop(columns="patient_id")
    train, test = df.iloc[:520], df.iloc[520:].reset_index(drop=True)
    train.to_csv(d / "train.csv", index=False)
    test.to_csv(d / "test.csv", index=False)
    metrics = cli_train(d / "cli", "data=csv", f"data.path={d / 'train.csv'}", f"data.test_path={d / 'test.csv'}",
                        "data.duration_col=time", "data.event_col=cens", "data.val_fraction=0.2", "data.split_seed=2",
                        "optimizer.lr=0.003", "scheduler=warmup_cosine", "scheduler.warmup_epochs=2",
                        "model.hidden=[16,8]", "trainer.max_epochs=12", "trainer.batch_size=128", "trainer.seed=5")
    before = (__import__("torch").get_num_threads(), np.random.get_state()[1].copy(), random.getstate())
    est = DeepCoxRegressor(optimizer=AdamWConfig(lr=0.003), scheduler={"name": "warmup_cosine", "warmup_epochs": 2},
                           model={"hidden": [16, 8]}, trainer={"max_epochs": 12, "batch_size": 128, "seed": 5},
                           data={"val_fraction": 0.2, "split_seed": 2, "duration_col": "time", "event_col": "cens"},
                           run_dir=d / "api")
    est.fit(train.drop(columns=["time", "cens"]), surv(train))
    after = (__import__("torch").get_num_threads(), np.random.get_state()[1].copy(), random.getstate())
    return d, metrics, est, test, before, after


@pytest.mark.slow
def test_the_estimator_gives_the_clis_numbers_to_the_bit(parity):
    d, metrics, est, test, _, _ = parity
    cli = read_frame(d / "cli" / "test_predictions.csv")
    X, y = test.drop(columns=["time", "cens"]), surv(test)
    assert est.val_cindex_ == metrics["val_cindex"] and est.best_epoch_ == metrics["best_epoch"]
    np.testing.assert_array_equal(est.predict(X), cli["risk"].to_numpy())
    assert est.score(X, y) == metrics["test_cindex"]
    assert list(est.score_interval(X, y)) == [metrics["test_cindex"], *metrics["test_cindex_ci"]]
    surv_fns = est.predict_survival_function(X)
    for h in metrics["horizons"]:
        np.testing.assert_array_equal([f(h) for f in surv_fns], cli[f"surv@{h:g}"].to_numpy())
    epochs = read_frame(d / "cli" / "epochs.csv")
    assert [r["val_cindex"] for r in est.history_] == epochs["val_cindex"].tolist()
    assert [r["train_loss"] for r in est.history_] == epochs["train_loss"].tolist()
    assert est.metrics_["val_ibs"] == metrics["val_ibs"] and not any(k.startswith("test_") for k in est.metrics_)


@pytest.mark.slow
def test_predictions_follow_scikit_survival_and_the_run_dir_serves_survopt_predict(parity, tmp_path):
    from sksurv.functions import StepFunction
    from sksurv.metrics import concordance_index_censored

    from survopt_hydra.app.predict import predict_file

    d, metrics, est, test, before, after = parity
    X, y = test.drop(columns=["time", "cens"]), surv(test)
    risk = est.predict(X)
    assert est.score(X, y) == concordance_index_censored(y["Status"], y["Days"], risk)[0]
    fns, arr = est.predict_survival_function(X), est.predict_survival_function(X, return_array=True)
    assert isinstance(fns[0], StepFunction) and arr.shape == (len(X), len(est.unique_times_))
    np.testing.assert_array_equal(fns[3](est.unique_times_), arr[3])
    assert (np.diff(arr, axis=1) <= 0).all() and ((arr > 0) & (arr <= 1)).all()
    hazard = est.predict_cumulative_hazard_function(X, return_array=True)
    np.testing.assert_allclose(np.exp(-hazard), arr, rtol=1e-12)
    # the kept run dir is a finished survopt-train run: survopt-predict scores the same risks
    out, n = predict_file(d / "api", d / "test.csv", tmp_path / "p.csv")
    np.testing.assert_array_equal(read_frame(out)["risk"].to_numpy(), risk)
    # columns by name in any order; a plain array of the fitted width takes the fitted names
    np.testing.assert_array_equal(est.predict(X[X.columns[::-1]]), risk)
    np.testing.assert_array_equal(est.predict(X.to_numpy(dtype=object)), risk)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X), risk)
    assert list(est.feature_names_in_) == list(X.columns) and est.n_features_in_ == X.shape[1]
    # fit left the caller's threads and global generators as they were
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2] == after[2]


@pytest.mark.slow
def test_a_saved_run_and_a_bag_load_as_fitted_estimators(parity, tmp_path):
    """DeepCoxRegressor.load: the CLI's run dir predicts its own test_predictions.csv and scores its test C-index;
    an ensemble of the CLI's and the estimator's runs gives the mean standardized risk and the mean S(t|x) of its
    members, and the same risks as survopt-predict on the ensemble folder."""
    from survopt_hydra.app.ensemble import save_ensemble
    from survopt_hydra.app.predict import predict_file

    d, metrics, est, test, _, _ = parity
    X, y = test.drop(columns=["time", "cens"]), surv(test)
    cli = read_frame(d / "cli" / "test_predictions.csv")
    run = DeepCoxRegressor.load(d / "cli")
    np.testing.assert_array_equal(run.predict(X), cli["risk"].to_numpy())
    assert run.score(X, y) == metrics["test_cindex"]
    fns = run.predict_survival_function(X)
    for h in metrics["horizons"]:
        np.testing.assert_array_equal([f(h) for f in fns], cli[f"surv@{h:g}"].to_numpy())
    assert list(run.feature_names_in_) == list(X.columns)

    bag = save_ensemble(tmp_path / "bag", [(d / "cli", 0.1, 2.0), (d / "api", -0.2, 0.5)])
    loaded = DeepCoxRegressor.load(bag)
    members = [DeepCoxRegressor.load(d / "cli"), est]
    expected = ((members[0].predict(X) - 0.1) / 2.0 + (members[1].predict(X) + 0.2) / 0.5) / 2
    np.testing.assert_allclose(loaded.predict(X), expected, rtol=0, atol=1e-12)
    times = loaded.unique_times_  # the members' baseline steps together
    np.testing.assert_array_equal(times, np.union1d(*(m.predictor_.baseline.times.numpy() for m in members)))
    assert set(times) <= set(est.unique_times_) | set(members[0].unique_times_)
    curves = np.mean([m.predictor_.baseline.survival(m.predict(X), times).numpy() for m in members], axis=0)
    np.testing.assert_allclose(loaded.predict_survival_function(X, return_array=True), curves, rtol=0, atol=1e-12)
    from survopt_hydra.survival import concordance_index

    assert loaded.score(X, y) == concordance_index(loaded.predict(X), y["Days"], y["Status"])
    out, _ = predict_file(bag, d / "test.csv", tmp_path / "p.csv")
    np.testing.assert_allclose(read_frame(out)["risk"].to_numpy(), loaded.predict(X), rtol=0, atol=1e-12)


# ================================================================== scikit-learn's tools (slow)
@pytest.mark.slow
def test_pipeline_grid_search_and_cross_val_score_with_the_real_classes():
    from sklearn.base import clone
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    df = gbsg2().drop(columns="patient_id").iloc[:480]
    X, y = df.drop(columns=["time", "cens"]), surv(df)
    prep = ColumnTransformer([("scaled", StandardScaler(), ["age", "pnodes"])], remainder="passthrough",
                             verbose_feature_names_out=False).set_output(transform="pandas")
    pipe = Pipeline([("prep", prep), ("cox", DeepCoxRegressor(trainer={"max_epochs": 6},
                                                              data={"val_fraction": 0.25}))])
    folds = KFold(2, shuffle=True, random_state=0)
    grid = GridSearchCV(pipe, {"cox__optimizer__lr": [1e-3, 3e-2]}, cv=folds, n_jobs=1).fit(X, y)
    # each cell of the search is the pipeline refitted by hand with that LR on that fold
    for k, lr in enumerate(grid.cv_results_["param_cox__optimizer__lr"]):
        for f, (tr, te) in enumerate(folds.split(X)):
            by_hand = clone(pipe).set_params(cox__optimizer__lr=lr).fit(X.iloc[tr], y[tr])
            assert grid.cv_results_[f"split{f}_test_score"][k] == by_hand.score(X.iloc[te], y[te])
    scores = grid.cv_results_["mean_test_score"]
    assert scores[0] != scores[1] and grid.best_params_["cox__optimizer__lr"] == [1e-3, 3e-2][int(np.argmax(scores))]
    best = grid.best_estimator_.named_steps["cox"]
    assert best.config_["optimizer"]["lr"] == grid.best_params_["cox__optimizer__lr"]
    assert "age" in best.feature_names_in_ and "tgrade" in best.feature_names_in_  # text passed through, encoded here
    # a grid over whole groups, and cross_val_score
    whole = GridSearchCV(DeepCoxRegressor(trainer={"max_epochs": 4}),
                         {"optimizer": ["adamw", SGDConfig(lr=0.05, momentum=0.9)]}, cv=folds).fit(X, y)
    assert whole.best_estimator_.config_["optimizer"]["name"] in ("adamw", "sgd")
    cv = cross_val_score(pipe, X, y, cv=folds)
    assert cv.shape == (2,) and ((cv > 0.5) & (cv < 1)).all()


@pytest.mark.slow
def test_notebook_session_keeps_ids_and_matches_the_cli(tmp_path):
    """Issue 28's "Done when": a DataFrame with number, text and ID columns; the estimator in a
    Pipeline and a GridSearchCV; predictions with the IDs kept; the CLI's C-index for the chosen LR."""
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import Pipeline

    df = gbsg2(noise_seed=4).set_index("patient_id", drop=False)
    train, test = df.iloc[:500], df.iloc[500:]
    pipe = Pipeline([
        ("ids_out", ColumnTransformer([("id", "drop", ["patient_id"])], remainder="passthrough",
                                      verbose_feature_names_out=False).set_output(transform="pandas")),
        ("cox", DeepCoxRegressor(trainer={"max_epochs": 8}, data={"val_fraction": 0.2})),
    ])
    X, y = train.drop(columns=["time", "cens"]), surv(train)
    grid = GridSearchCV(pipe, {"cox__optimizer__lr": [1e-3, 1e-2]}, cv=KFold(2, shuffle=True, random_state=1)).fit(X, y)
    X_test, y_test = test.drop(columns=["time", "cens"]), surv(test)
    predictions = pd.DataFrame({"risk": grid.predict(X_test)}, index=X_test.index)
    assert predictions.index.tolist() == test["patient_id"].tolist()  # the IDs, in the rows' order
    # one row alone: a one-row forward pass takes another matmul kernel, which may round the last float32 bit
    assert predictions.loc["P0600", "risk"] == pytest.approx(grid.predict(X_test.loc[["P0600"]])[0], rel=1e-6)
    c, lo, hi = grid.best_estimator_.named_steps["cox"].score_interval(X_test.drop(columns="patient_id"), y_test)
    assert c == grid.score(X_test, y_test) and lo < c < hi
    # the CLI on the same rows written as CSV, with the LR the search chose
    features = [c for c in train.columns if c not in ("patient_id", "time", "cens")]
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    lr = grid.best_params_["cox__optimizer__lr"]
    metrics = cli_train(tmp_path / "run", "data=csv", f"data.path={tmp_path / 'train.csv'}",
                        f"data.test_path={tmp_path / 'test.csv'}", "data.duration_col=time", "data.event_col=cens",
                        f"data.feature_cols=[{','.join(features)}]", "data.val_fraction=0.2",
                        f"optimizer.lr={lr}", "trainer.max_epochs=8")
    assert grid.score(X_test, y_test) == metrics["test_cindex"]
    assert grid.best_estimator_.named_steps["cox"].val_cindex_ == metrics["val_cindex"]
    cli = read_frame(tmp_path / "run" / "test_predictions.csv")
    np.testing.assert_array_equal(predictions["risk"].to_numpy(), cli["risk"].to_numpy())


class TinyCox(torch.nn.Module):
    """A user's own model (``model=custom``): the app offers ``in_features``."""

    def __init__(self, in_features: int, width: int = 4) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(in_features, width), torch.nn.Tanh(),
                                       torch.nn.Linear(width, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.slow
def test_a_users_own_module_trains_and_predicts():
    df = gbsg2().drop(columns="patient_id")
    X, y = df.drop(columns=["time", "cens"]), surv(df)
    est = DeepCoxRegressor(model={"name": "custom", "_target_": f"{__name__}.TinyCox", "width": 6},
                           trainer={"max_epochs": 40}).fit(X.iloc[:500], y[:500])
    assert isinstance(est.predictor_.model, TinyCox) and est.predictor_.model.net[0].out_features == 6
    assert est.score(X.iloc[500:], y[500:]) > 0.6  # it learnt (0.661; lifelines CoxPH on these rows: 0.671)


# ================================================================== the docs' example runs (slow)
@pytest.mark.slow
def test_the_python_api_docs_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "python_api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile("\n".join(blocks), "docs/python_api.md", "exec"), namespace)  # noqa: S102 (our own docs)
    assert 0.5 < namespace["c"] < 1 and namespace["lo"] < namespace["c"] < namespace["hi"]
