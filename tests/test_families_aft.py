"""Weibull and log-normal AFT: the censored likelihood and S(t | x).

References: scipy's distributions (``gumbel_l`` is the minimum extreme-value law of a Weibull
log-time, ``norm`` the log-normal's) for the loss at given outputs, and lifelines'
``WeibullAFTFitter`` / ``LogNormalAFTFitter``: a linear location and a constant scale fitted
by minimising our loss must give lifelines' coefficients, log-likelihood and curves.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from survopt_hydra.survival.families import LogNormalAFT, WeibullAFT, family_from_dict
from survopt_hydra.survival.families.aft import log_sigma

LAWS = {WeibullAFT: stats.gumbel_l, LogNormalAFT: stats.norm}


def aft_cohort(seed, n=400):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    log_t = 1.0 + 0.5 * x[:, 0] - 0.3 * x[:, 1] + 0.7 * rng.gumbel(size=n) * -1  # minimum extreme value
    t, c = np.exp(log_t), rng.exponential(6.0, n)
    return x, np.round(np.minimum(t, c), 3) + 1e-3, (t <= c).astype(np.int64)


def test_loss_by_hand():
    """sigma = 1 (raw 0), mu = 0: an event at u = 0 and a censoring at u = log 2."""
    outputs = torch.zeros(2, 2, dtype=torch.float64)
    target = {"u": torch.tensor([0.0, math.log(2.0)], dtype=torch.float64), "event": torch.tensor([1.0, 0.0])}
    weibull = WeibullAFT(log_loc=0.0, log_scale=1.0)
    # event: -(z - e^z) = 1; censoring: e^z = 2
    assert float(weibull.loss(outputs, target)) == pytest.approx((1.0 + 2.0) / 2, rel=1e-12)
    lognormal = LogNormalAFT(log_loc=0.0, log_scale=1.0)
    # event: z^2/2 + log sqrt(2 pi) at z = 0; censoring: -log(1 - Phi(log 2))
    censored = -math.log(0.5 * math.erfc(math.log(2.0) / math.sqrt(2.0)))
    assert float(lognormal.loss(outputs, target)) == pytest.approx(
        (0.5 * math.log(2 * math.pi) + censored) / 2, rel=1e-12)
    # S(t) at t = e (u = 1, z = 1): exp(-e) and 1 - Phi(1)
    assert float(weibull.survival(outputs[:1], [math.e])) == pytest.approx(math.exp(-math.e), rel=1e-12)
    assert float(lognormal.survival(outputs[:1], [math.e])) == pytest.approx(0.5 * math.erfc(1 / math.sqrt(2)),
                                                                             rel=1e-12)


@pytest.mark.parametrize("cls", [WeibullAFT, LogNormalAFT])
def test_loss_is_the_censored_log_likelihood(cls):
    x, durations, events = aft_cohort(0, n=50)
    family = cls().fit(durations, events)
    target = family.transform(durations, events)
    g = torch.Generator().manual_seed(0)
    outputs = torch.randn(50, 2, generator=g, dtype=torch.float64)
    law = LAWS[cls]
    u = (np.log(durations) - family.log_loc) / family.log_scale
    sigma = np.exp(5 * np.tanh(outputs[:, 1].numpy() / 5))
    z = (u - outputs[:, 0].numpy()) / sigma
    ll = np.where(events == 1, law.logpdf(z) - np.log(sigma), law.logsf(z))
    assert float(family.loss(outputs, target)) == pytest.approx(-ll.mean(), rel=1e-10)
    s = family.survival(outputs, durations)
    assert np.diag(s.numpy()) == pytest.approx(law.sf(z), rel=1e-10)


def fit_linear(family, x, durations, events):
    """Minimise the family's loss over a linear location and one shared log-scale (float64 LBFGS)."""
    target = family.transform(durations, events)
    xt = torch.tensor(x, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    c = torch.zeros((), dtype=torch.float64, requires_grad=True)
    r = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, c, r], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def outputs():
        return torch.stack([xt @ w + c, r.expand(len(xt))], 1)

    def closure():
        opt.zero_grad()
        loss = family.loss(outputs(), target)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return w.detach(), float(c), float(log_sigma(r)), float(family.loss(outputs(), target)), outputs()


@pytest.mark.parametrize("cls", [WeibullAFT, LogNormalAFT])
def test_fit_recovers_lifelines(cls):
    lifelines = pytest.importorskip("lifelines")
    import pandas as pd

    x, durations, events = aft_cohort(1)
    family = cls().fit(durations, events)
    w, c, ls, loss, outputs = fit_linear(family, x, durations, events)
    outputs = outputs.detach()
    a, b = family.log_loc, family.log_scale
    df = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "T": durations, "E": events})
    if cls is WeibullAFT:
        ref = lifelines.WeibullAFTFitter().fit(df, "T", "E")
        loc, scale = ref.params_["lambda_"], -ref.params_["rho_"]["Intercept"]  # log sigma = -log rho
    else:
        ref = lifelines.LogNormalAFTFitter().fit(df, "T", "E")
        loc, scale = ref.params_["mu_"], ref.params_["sigma_"]["Intercept"]
    assert (b * w).tolist() == pytest.approx([loc["x0"], loc["x1"]], abs=1e-4)
    assert a + b * c == pytest.approx(loc["Intercept"], abs=1e-4)
    assert ls + math.log(b) == pytest.approx(scale, abs=1e-4)
    # our loss is the mean NLL of u = (log t - a) / b: the likelihood of t adds -sum_events log(b t)
    log_lik = -len(durations) * loss - float(np.sum(events * (np.log(durations) + math.log(b))))
    assert log_lik == pytest.approx(ref.log_likelihood_, abs=1e-5)
    at = np.quantile(durations, [0.1, 0.5, 0.9])
    expected = ref.predict_survival_function(df.iloc[:5], times=at).values.T
    assert family.survival(outputs[:5], at).numpy() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("cls", [WeibullAFT, LogNormalAFT])
def test_extreme_outputs_give_finite_loss_and_gradient(cls):
    x, durations, events = aft_cohort(2, n=8)
    family = cls().fit(durations, events)
    target = family.transform(durations, events)
    for scale in (1e2, 1e4, 1e15):
        for sign in (1.0, -1.0):
            outputs = (torch.tensor([[1.0, -1.0], [-1.0, 1.0]] * 4) * scale * sign).requires_grad_(True)
            loss = family.loss(outputs, target)
            loss.backward()
            assert bool(torch.isfinite(loss)) and bool(torch.isfinite(outputs.grad).all())
    s = family.survival(torch.tensor([[1e4, -1e4], [-1e4, 1e4]]), [0.0, 1.0, 1e9])
    assert bool(torch.isfinite(s).all()) and s[:, 0].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("cls", [WeibullAFT, LogNormalAFT])
def test_loss_needs_no_host_sync(cls):
    family = cls().fit([1.0, 2.0, 3.0], [1, 0, 1])
    target = {k: v.to("meta") for k, v in family.transform([1.0, 2.0, 3.0], [1, 0, 1]).items()}
    assert family.loss(torch.empty(3, 2, device="meta"), target).shape == ()


def test_options_are_checked_and_round_trip():
    with pytest.raises(ValueError, match="durations must be > 0"):
        WeibullAFT().fit([0.0, 1.0], [1, 1])
    with pytest.raises(ValueError, match="call fit"):
        LogNormalAFT().transform([1.0], [1])
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        family = WeibullAFT().fit([1.0, 2.0], [1, 0])
        family.loss(torch.zeros(2, 3), family.transform([1.0, 2.0], [1, 0]))
    with pytest.raises(ValueError, match="log_scale"):
        family_from_dict({"family": "weibull_aft", "log_loc": 0.0, "log_scale": -1.0})
    fitted = LogNormalAFT().fit([1.0, 2.0, 5.0], [1, 0, 1])
    assert family_from_dict(fitted.to_dict()) == fitted and fitted.n_outputs == 2
