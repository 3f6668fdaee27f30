"""Breslow baseline and S(t | x) against lifelines' CoxPHFitter (an independent implementation)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from survopt_hydra.survival.breslow import BreslowBaseline
from survopt_hydra.survival.data import resolve_path


def test_survival_curves_match_lifelines_cox_model():
    pd = pytest.importorskip("pandas")
    from lifelines import CoxPHFitter

    df = pd.read_csv(resolve_path("pkg://lifelines/datasets/rossi.csv"))  # integer weeks: many tied times
    cph = CoxPHFitter().fit(df, "week", "arrest")
    covariates = df.drop(columns=["week", "arrest"])
    risk = covariates.to_numpy(float) @ cph.params_.to_numpy()  # our own (uncentred) linear predictor
    base = BreslowBaseline.fit(torch.tensor(risk), df["week"].to_numpy(), df["arrest"].to_numpy())
    new = covariates.iloc[::37]
    times = cph.baseline_cumulative_hazard_.index.to_numpy()  # lifelines' own grid (it interpolates off it)
    ref = cph.predict_survival_function(new, times=times).to_numpy().T
    ours = base.survival(new.to_numpy(float) @ cph.params_.to_numpy(), times).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    assert np.abs(ours - ref).max() < 1e-10  # in fact the same estimator to rounding
    assert ours.min() < 0.7  # curves really fall: the comparison is not between 1s


def test_step_function_shift_invariance_and_round_trip():
    rng = np.random.default_rng(0)
    t = rng.integers(1, 20, 200).astype(float)
    e = (rng.random(200) < 0.6).astype(float)
    r = rng.normal(size=200)
    a, b = BreslowBaseline.fit(r, t, e), BreslowBaseline.fit(r + 500.0, t, e)  # exp(500) would overflow alone
    np.testing.assert_allclose(a.survival(r[:5], [3, 10]).numpy(), b.survival(r[:5] + 500.0, [3, 10]).numpy())
    # right-continuous steps: constant between distinct times, 1 before the first
    s = a.survival(r[:3], [0.5, 3.0, 3.5, 3.999]).numpy()
    np.testing.assert_array_equal(s[:, 0], 1.0)
    np.testing.assert_array_equal(s[:, 1], s[:, 3])
    # the first step by hand: d(u) / sum of exp(risk) over the rows at risk
    u = t.min()
    h = e[t == u].sum() / np.exp(r[t >= u]).sum()
    np.testing.assert_allclose(a.cumulative_hazard(np.zeros(1), [u]).numpy()[0, 0], h)
    back = BreslowBaseline.from_dict(a.to_dict())
    assert torch.equal(back.times, a.times) and torch.equal(back.cumhaz, a.cumhaz) and back.shift == a.shift
    with pytest.raises(ValueError, match="times must increase"):
        BreslowBaseline.from_dict({"times": [2.0, 1.0], "cumhaz": [0.1, 0.2], "shift": 0.0})


@pytest.mark.slow  # loads a cohort through the app and fits lifelines: several seconds
def test_predictor_pipeline_matches_lifelines_for_a_linear_model(tmp_path):
    """Raw GBSG2 test rows -> schema encoding -> training standardization -> LinearCox holding lifelines'
    coefficients -> Breslow of the training rows: S(t|x) equals lifelines' predict_survival_function."""
    pd = pytest.importorskip("pandas")
    from lifelines import CoxPHFitter

    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.schemas import check_app_config
    from survopt_hydra.app.data import _split, load_cohort
    from survopt_hydra.app.predictor import Predictor, split_risks
    from survopt_hydra.survival.models import LinearCox

    data = check_app_config(compose_train(["data=gbsg2"]))["data"]
    cohort = load_cohort(data)
    names = cohort.feature_names
    train = pd.DataFrame(cohort.train.x.double().numpy(), columns=names)
    train["T"], train["E"] = cohort.train.durations.double().numpy(), cohort.train.events.double().numpy()
    cph = CoxPHFitter(penalizer=0.01).fit(train, "T", "E")  # one-hot pairs are collinear: a small penalty
    model = LinearCox(len(names))
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor(cph.params_[names].to_numpy())[None, :])
    model = model.double()
    base = BreslowBaseline.fit(split_risks(model, _as_double(cohort.train)), cohort.train.durations,
                               cohort.train.events)
    pred = Predictor(cohort.extra["schema"], cohort.standardizer, base, model, tmp_path)

    raw = pd.read_csv(resolve_path(data["path"]))
    _, _, te = _split(raw["cens"].to_numpy(), (0.7, 0.15, 0.15), data["split_seed"], "x")
    rows = raw.iloc[te].astype(str)
    column = {c: rows[c].str.strip().tolist() for c in rows.columns}
    x = pred.features("gbsg2", column, list(range(1, len(te) + 1)))
    assert torch.equal(x, cohort.test.x)  # the predictor encodes raw rows exactly as the trainer did
    times = cph.baseline_cumulative_hazard_.index.to_numpy()
    ours = pred.baseline.survival(pred.risk(x.double()).double(), times).numpy()
    ref = cph.predict_survival_function(pd.DataFrame(x.double().numpy(), columns=names), times=times).to_numpy().T
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    assert ours.min() < 0.5


def _as_double(split):
    from survopt_hydra.app.data import Split

    return Split(split.x.double(), split.durations, split.events)
