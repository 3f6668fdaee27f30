"""Uno's C, the integrated Brier score and cumulative/dynamic AUC against scikit-survival (test-only dependency)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from survopt_hydra.survival.timedep import (
    brier_scores, cumulative_dynamic_auc, integrated_brier_score, kaplan_meier, step_at, uno_cindex,
)

sksurv_metrics = pytest.importorskip("sksurv.metrics")
from sksurv.util import Surv  # noqa: E402


def cohort(seed: int, n: int, censoring: float = 0.4):
    """Integer times (many ties), ~``censoring`` censored, tied risks, survival curves from a Cox model."""
    rng = np.random.default_rng(seed)
    risk = np.round(rng.normal(size=n), 1)  # ties in risk
    t = np.ceil(rng.exponential(20 * np.exp(-risk))).astype(float)
    c = np.ceil(rng.exponential(20 / censoring * (1 - censoring) + 1, n))
    durations, events = np.minimum(t, c), t <= c
    return risk, durations, events


def setup(seed: int):
    risk_tr, t_tr, e_tr = cohort(seed, 400)
    risk, t, e = cohort(seed + 100, 250)
    inside = t < t_tr.max()  # scikit-survival needs test times inside the training follow-up
    return t_tr, e_tr, risk[inside], t[inside], e[inside]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tau_q", [None, 0.6])
def test_uno_c_matches_sksurv(seed, tau_q):
    t_tr, e_tr, risk, t, e = setup(seed)
    tau = None if tau_q is None else float(np.quantile(t[e], tau_q))
    ref = sksurv_metrics.concordance_index_ipcw(Surv.from_arrays(e_tr, t_tr), Surv.from_arrays(e, t), risk, tau=tau)
    ours = uno_cindex(torch.tensor(risk), t, e, t_tr, e_tr, tau=tau)
    assert ours == pytest.approx(ref[0], abs=1e-6)
    assert len(np.unique(risk)) < len(risk) and len(np.unique(t)) < len(t)  # ties really present


@pytest.mark.parametrize("seed", range(5))
def test_brier_and_ibs_match_sksurv(seed):
    t_tr, e_tr, risk, t, e = setup(seed)
    times = np.unique(np.quantile(t[e], np.linspace(0.1, 0.8, 9)).round())
    surv = np.exp(-np.outer(np.exp(risk), times / 25.0))
    y_tr, y = Surv.from_arrays(e_tr, t_tr), Surv.from_arrays(e, t)
    _, ref = sksurv_metrics.brier_score(y_tr, y, surv, times)
    np.testing.assert_allclose(brier_scores(surv, times, t, e, t_tr, e_tr).numpy(), ref, atol=1e-6, rtol=0)
    ref_ibs = sksurv_metrics.integrated_brier_score(y_tr, y, surv, times)
    assert integrated_brier_score(torch.tensor(surv), times, t, e, t_tr, e_tr) == pytest.approx(ref_ibs, abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_cumulative_dynamic_auc_matches_sksurv(seed):
    t_tr, e_tr, risk, t, e = setup(seed)
    times = np.unique(np.quantile(t[e], [0.25, 0.5, 0.75]))
    ref, ref_mean = sksurv_metrics.cumulative_dynamic_auc(Surv.from_arrays(e_tr, t_tr), Surv.from_arrays(e, t),
                                                          risk, times)
    ours, mean = cumulative_dynamic_auc(risk, times, t, e, t_tr, e_tr)
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    assert mean == pytest.approx(ref_mean, abs=1e-6)
    one, one_mean = cumulative_dynamic_auc(risk, times[:1], t, e, t_tr, e_tr)
    assert one_mean == one[0] == pytest.approx(ref[0], abs=1e-6)


def test_kaplan_meier_matches_sksurv():
    from sksurv.nonparametric import kaplan_meier_estimator

    _, t, e = cohort(7, 300)
    for reverse in (False, True):
        ref_t, ref_p = kaplan_meier_estimator(e, t, reverse=reverse)
        times, prob = kaplan_meier(t, e, reverse=reverse)
        np.testing.assert_array_equal(times[1:].numpy(), ref_t)
        np.testing.assert_allclose(prob[1:].numpy(), ref_p, atol=1e-12)
        at = torch.tensor([-1.0, ref_t[3], ref_t[3] + 0.5])
        np.testing.assert_allclose(step_at(times, prob, at).numpy(), [1.0, ref_p[3], ref_p[3]])
