"""The vectorized bootstrap: every resample equals lifelines / scikit-survival on the resampled rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from survopt_hydra.survival import bootstrap as bootstrap_module
from survopt_hydra.survival.bootstrap import bootstrap_intervals, bootstrap_metrics, percentile_interval, \
    resample_counts
from survopt_hydra.survival.timedep import brier_contributions, uno_weights

lifelines_ci = pytest.importorskip("lifelines.utils").concordance_index
sksurv_metrics = pytest.importorskip("sksurv.metrics")
from sksurv.util import Surv  # noqa: E402


def cohort(seed: int, n: int):
    """Integer times (ties), ~40% censored, rounded risks (ties), training rows that outlast the test rows."""
    rng = np.random.default_rng(seed)
    risk = np.round(rng.normal(size=n), 1)
    t = np.ceil(rng.exponential(20 * np.exp(-risk)))
    c = np.ceil(rng.exponential(30, n))
    d, e = np.minimum(t, c), t <= c
    t_tr, e_tr = np.ceil(rng.exponential(20, 3 * n)), rng.random(3 * n) < 0.6
    t_tr[0] = d.max() + 1
    return risk, d, e, t_tr, e_tr


@pytest.mark.parametrize("seed, n", [(0, 60), (1, 150)])
def test_each_resample_equals_the_references_on_the_resampled_rows(seed, n):
    risk, d, e, t_tr, e_tr = cohort(seed, n)
    tau = float(np.quantile(d[e], 0.7))
    grid = np.linspace(d.min(), np.quantile(d, 0.8), 12)
    surv = np.exp(-np.outer(np.exp(risk), grid / 25.0))
    out = bootstrap_metrics(risk, d, e, uno_weights=uno_weights(d, e, t_tr, e_tr, tau),
                            ibs_terms=brier_contributions(surv, grid, d, e, t_tr, e_tr), resamples=25, seed=seed)
    draws = np.random.default_rng(seed)  # the documented draws: one integers(0, n, n) per resample
    y_tr = Surv.from_arrays(e_tr, t_tr)
    for k in range(25):
        i = draws.integers(0, n, n)
        y = Surv.from_arrays(e[i], d[i])
        assert float(out["cindex"][k]) == pytest.approx(lifelines_ci(d[i], -risk[i], e[i]), abs=1e-12)
        uno = sksurv_metrics.concordance_index_ipcw(y_tr, y, risk[i], tau=tau)[0]
        assert float(out["uno_cindex"][k]) == pytest.approx(uno, abs=1e-12)
        ibs = sksurv_metrics.integrated_brier_score(y_tr, y, surv[i], grid)
        assert float(out["ibs"][k]) == pytest.approx(ibs, abs=1e-12)


def test_chunks_draw_the_same_resamples_as_one_call(monkeypatch):
    whole = np.random.default_rng(9).integers(0, 13, (20, 13))
    expected = np.stack([np.bincount(row, minlength=13) for row in whole])
    for chunk in (1, 7, 20, None):
        got = torch.cat(list(resample_counts(13, 20, seed=9, chunk=chunk))).numpy()
        np.testing.assert_array_equal(got, expected)
    risk, d, e, _, _ = cohort(2, 80)
    ref = bootstrap_metrics(risk, d, e, resamples=30, seed=4)["cindex"]
    monkeypatch.setattr(bootstrap_module, "default_chunk", lambda n: 3)  # chunks of 3 resamples
    np.testing.assert_allclose(bootstrap_metrics(risk, d, e, resamples=30, seed=4)["cindex"], ref, atol=1e-15)


def test_undefined_resamples_are_left_out_of_the_interval():
    # Two patients, one event: a resample drawing the same patient twice has no comparable pair.
    values = bootstrap_metrics([1.0, 0.0], [1.0, 2.0], [1, 0], resamples=200, seed=0)["cindex"]
    drawn_once_each = ~torch.isnan(values)
    assert 0 < int(drawn_once_each.sum()) < 200 and bool((values[drawn_once_each] == 1.0).all())
    assert percentile_interval(values) == [1.0, 1.0]
    assert percentile_interval(torch.full((5,), float("nan"))) is None
    v = np.random.default_rng(0).normal(size=999)
    assert percentile_interval(np.r_[v, np.nan, np.inf]) == pytest.approx(list(np.percentile(v, [2.5, 97.5])))


def test_intervals_are_seeded_and_shrink_with_more_patients():
    risk, d, e, _, _ = cohort(5, 1600)
    small = bootstrap_intervals(risk[:400], d[:400], e[:400], resamples=300, seed=1)["cindex"]
    assert small == bootstrap_intervals(risk[:400], d[:400], e[:400], resamples=300, seed=1)["cindex"]
    assert small != bootstrap_intervals(risk[:400], d[:400], e[:400], resamples=300, seed=2)["cindex"]
    large = bootstrap_intervals(risk, d, e, resamples=300, seed=1)["cindex"]
    assert small[0] < lifelines_ci(d[:400], -risk[:400], e[:400]) < small[1]
    assert large[0] < lifelines_ci(d, -risk, e) < large[1]
    assert 1.4 < (small[1] - small[0]) / (large[1] - large[0]) < 2.8  # ~sqrt(4) = 2: width ~ 1/sqrt(n)


def test_a_subset_bootstrap_above_max_rows_approximates_the_full_one():
    risk, d, e, t_tr, e_tr = cohort(6, 6000)
    tau = float(np.quantile(d[e], 0.7))
    w = uno_weights(d, e, t_tr, e_tr, tau)
    exact = bootstrap_intervals(risk, d, e, uno_weights=w, resamples=300, seed=3)
    assert bootstrap_intervals(risk, d, e, uno_weights=w, resamples=300, seed=3, max_rows=6000) == exact
    scaled = bootstrap_intervals(risk, d, e, uno_weights=w, resamples=300, seed=3, max_rows=2000)
    for key in ("cindex", "uno_cindex"):
        width = exact[key][1] - exact[key][0]
        assert scaled[key] == pytest.approx(exact[key], abs=0.25 * width), key  # same interval, up to noise
    assert scaled["cindex"][0] < lifelines_ci(d, -risk, e) < scaled["cindex"][1]
