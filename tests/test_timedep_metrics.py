"""Uno's C, the integrated Brier score and cumulative/dynamic AUC against scikit-survival (test-only dependency)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import survopt_hydra.survival.timedep as timedep
from survopt_hydra.survival.metrics import concordance_index
from survopt_hydra.survival.timedep import (
    brier_contributions, brier_scores, cumulative_dynamic_auc, integrated_brier_score, kaplan_meier, step_at,
    uno_cindex,
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
    assert ours == pytest.approx(ref[0], abs=1e-9)
    assert len(np.unique(risk)) < len(risk) and len(np.unique(t)) < len(t)  # ties really present


@pytest.mark.parametrize("seed", range(5))
def test_brier_and_ibs_match_sksurv(seed):
    t_tr, e_tr, risk, t, e = setup(seed)
    times = np.unique(np.quantile(t[e], np.linspace(0.1, 0.8, 9)).round())
    surv = np.exp(-np.outer(np.exp(risk), times / 25.0))
    y_tr, y = Surv.from_arrays(e_tr, t_tr), Surv.from_arrays(e, t)
    _, ref = sksurv_metrics.brier_score(y_tr, y, surv, times)
    np.testing.assert_allclose(brier_scores(surv, times, t, e, t_tr, e_tr).numpy(), ref, atol=1e-9, rtol=0)
    ref_ibs = sksurv_metrics.integrated_brier_score(y_tr, y, surv, times)
    assert integrated_brier_score(torch.tensor(surv), times, t, e, t_tr, e_tr) == pytest.approx(ref_ibs, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_cumulative_dynamic_auc_matches_sksurv(seed):
    t_tr, e_tr, risk, t, e = setup(seed)
    times = np.unique(np.quantile(t[e], [0.25, 0.5, 0.75]))
    ref, ref_mean = sksurv_metrics.cumulative_dynamic_auc(Surv.from_arrays(e_tr, t_tr), Surv.from_arrays(e, t),
                                                          risk, times)
    ours, mean = cumulative_dynamic_auc(risk, times, t, e, t_tr, e_tr)
    np.testing.assert_allclose(ours, ref, atol=1e-9, rtol=0)
    assert mean == pytest.approx(ref_mean, abs=1e-9)
    one, one_mean = cumulative_dynamic_auc(risk, times[:1], t, e, t_tr, e_tr)
    assert one_mean == one[0] == pytest.approx(ref[0], abs=1e-9)


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


@pytest.mark.parametrize("n", [40, 3000])
def test_uno_c_matches_sksurv_at_larger_sizes_with_ties(n):
    risk_tr, t_tr, e_tr = cohort(11, 2 * n)
    risk, t, e = cohort(12, n)
    inside = t < t_tr.max()
    risk, t, e = risk[inside], t[inside], e[inside]
    for tau in (None, float(np.quantile(t[e], 0.5))):
        ref = sksurv_metrics.concordance_index_ipcw(Surv.from_arrays(e_tr, t_tr), Surv.from_arrays(e, t), risk,
                                                    tau=tau)[0]
        assert uno_cindex(risk, t, e, t_tr, e_tr, tau=tau) == pytest.approx(ref, abs=1e-9)


def test_uno_tied_tol_is_applied_as_scikit_survival_applies_it():
    """Risk differences at and around tied_tol: the same pairs are ties as in ``abs(est - est_i) <= tied_tol``."""
    rng = np.random.default_rng(2)
    _, t_tr, e_tr = cohort(3, 300)
    _, t, e = cohort(4, 400)
    inside = t < t_tr.max()
    t, e = t[inside], e[inside]
    base = np.round(rng.normal(size=t.size), 1)  # shared by many rows ...
    risk = base + rng.integers(-3, 4, t.size) * 0.5e-8  # ... 0, 0.5e-8, 1e-8 (rounded either way) ... apart
    for tol in (1e-8, 1e-3):
        ref = sksurv_metrics.concordance_index_ipcw(Surv.from_arrays(e_tr, t_tr), Surv.from_arrays(e, t), risk,
                                                    tied_tol=tol)[0]
        assert uno_cindex(risk, t, e, t_tr, e_tr, tied_tol=tol) == pytest.approx(ref, abs=1e-12)


def test_uno_equals_harrell_when_nothing_in_training_is_censored():
    # G = 1 everywhere: every weight is 1, so Uno's C is Harrell's C (continuous risks: no tol-ties).
    rng = np.random.default_rng(8)
    t, e, risk = rng.exponential(size=500), rng.random(500) < 0.5, rng.normal(size=500)
    assert uno_cindex(risk, t, e, rng.exponential(size=100), np.ones(100)) == pytest.approx(
        concordance_index(risk, t, e), abs=1e-12)
    with pytest.raises(ValueError, match="no comparable pair"):
        uno_cindex(risk, t, e, t, e, tau=float(t.min()))  # no event before tau


def test_brier_blocks_and_survival_functions_give_the_same_figures(monkeypatch):
    t_tr, e_tr, risk, t, e = setup(1)
    times = np.unique(np.quantile(t[e], np.linspace(0.1, 0.8, 9)).round())
    surv = np.exp(-np.outer(np.exp(risk), times / 25.0))
    whole = brier_scores(surv, times, t, e, t_tr, e_tr)
    per_row = brier_contributions(surv, times, t, e, t_tr, e_tr)
    monkeypatch.setattr(timedep, "BLOCK_ELEMS", 2 * times.size + 1)  # blocks of 2 rows: many blocks
    calls = []

    def by_rows(rows: slice) -> np.ndarray:
        calls.append(rows)
        return surv[rows]

    np.testing.assert_allclose(brier_scores(by_rows, times, t, e, t_tr, e_tr).numpy(), whole.numpy(), atol=1e-15)
    np.testing.assert_allclose(brier_contributions(by_rows, times, t, e, t_tr, e_tr).numpy(), per_row.numpy(),
                               atol=1e-15)
    assert max(r.stop - r.start for r in calls) == 2 and len(calls) == 2 * ((len(t) + 1) // 2)
    # The per-row terms average to the IBS (scikit-survival's trapezoid over the per-time scores).
    ref = sksurv_metrics.integrated_brier_score(Surv.from_arrays(e_tr, t_tr), Surv.from_arrays(e, t), surv, times)
    assert float(per_row.mean()) == pytest.approx(ref, abs=1e-12)


def test_cumulative_dynamic_auc_with_a_score_per_time_matches_sksurv():
    t_tr, e_tr, risk, t, e = setup(4)
    times = np.unique(np.quantile(t[e], [0.25, 0.5, 0.75]))
    scores = np.round(np.outer(risk, [1.0, 0.5, -0.2]) + np.random.default_rng(0).normal(size=(risk.size, 3)), 1)
    ref, ref_mean = sksurv_metrics.cumulative_dynamic_auc(Surv.from_arrays(e_tr, t_tr), Surv.from_arrays(e, t),
                                                          scores, times)
    ours, mean = cumulative_dynamic_auc(torch.tensor(scores), times, t, e, t_tr, e_tr)
    np.testing.assert_allclose(ours, ref, atol=1e-12, rtol=0)
    assert mean == pytest.approx(ref_mean, abs=1e-12)
