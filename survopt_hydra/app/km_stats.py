"""The numbers behind the survival plots: Kaplan-Meier with 95% bands, numbers at risk, the log-rank test.

Conventions are lifelines' defaults, and tests/test_plots.py holds them to lifelines
(``KaplanMeierFitter.survival_function_`` / ``confidence_interval_``, the ``event_table`` that
``add_at_risk_counts`` reads, ``multivariate_logrank_test`` / ``logrank_test``) within 1e-9:

* bands: Greenwood's variance on the log(-log) scale (the "exponential Greenwood" interval, also
  R's ``conf.type="log-log"``): S^exp(+-z sqrt(sum d/(n(n-d))) / log S), z = Phi^-1(0.975);
  a band is [1, 1] where S = 1 and [0, 0] where S = 0 (a step with n = d adds nothing to the sum);
* number at risk at time t: the rows with a duration > t (``add_at_risk_counts``' default);
* log-rank: the k-group statistic (O - E)' V^-1 (O - E) over the first k - 1 groups, chi-square
  with k - 1 degrees of freedom (hypergeometric variance; ties as one step).

Why not call lifelines: these few tensor ops are all the plots need, and importing lifelines drags
in pandas, scipy and autograd: 0.9-1.3 s on top of torch and matplotlib (2-core EPYC, Dec 2026),
about as much as importing matplotlib and drawing all four plots. The p-value's chi-square tail
is ``torch.special.gammaincc``. :func:`survopt_hydra.survival.timedep.kaplan_meier` (the
metrics' censoring weights) computes the same product without the counts and bands; a test keeps
the two equal.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

Z95 = float(torch.special.ndtri(torch.tensor(0.975, dtype=torch.float64)))  # 1.959963984540054


def _f64(values) -> Tensor:
    return torch.as_tensor(values).detach().to("cpu", torch.float64).reshape(-1)


@dataclass(frozen=True)
class KaplanMeier:
    """The KM estimate at each distinct duration (``times``, sorted): S just after it and its 95% band."""

    times: Tensor
    at_risk: Tensor  # rows with duration >= t
    events: Tensor
    censored: Tensor
    survival: Tensor
    lower: Tensor
    upper: Tensor

    @classmethod
    def fit(cls, durations, events, z: float = Z95) -> KaplanMeier:
        t, e = _f64(durations), _f64(events) > 0
        times, inverse = torch.unique(t, sorted=True, return_inverse=True)
        count = torch.zeros_like(times).index_add_(0, inverse, torch.ones_like(t))
        dead = torch.zeros_like(times).index_add_(0, inverse, e.double())
        at_risk = t.numel() - torch.cumsum(count, 0) + count
        survival = torch.cumprod(1.0 - dead / at_risk, 0)
        alive = at_risk - dead
        greenwood = torch.cumsum(torch.where(alive > 0, dead / (at_risk * alive.clamp(min=1)), 0.0), 0)
        log_s = torch.log(survival)
        inside = (survival > 0) & (survival < 1)
        safe = torch.where(inside, log_s, -1.0)
        shift = z * greenwood.sqrt() / safe  # <= 0: log(-log S) + |shift| is the lower bound
        lower = torch.where(inside, torch.exp(-torch.exp(torch.log(-safe) - shift)), survival)
        upper = torch.where(inside, torch.exp(-torch.exp(torch.log(-safe) + shift)), survival)
        return cls(times, at_risk, dead, count - dead, survival, lower, upper)

    def at(self, when) -> tuple[Tensor, Tensor, Tensor]:
        """(S, lower, upper) read as right-continuous steps at ``when`` (1 before the first time)."""
        idx = torch.searchsorted(self.times, _f64(when), right=True) - 1
        one = torch.ones(1, dtype=torch.float64)
        pick = lambda v: torch.cat([one, v])[idx + 1]  # noqa: E731 - index -1 -> the leading 1
        return pick(self.survival), pick(self.lower), pick(self.upper)


def number_at_risk(durations, when) -> Tensor:
    """Rows still under observation after each time in ``when`` (duration > t), as lifelines' at-risk table."""
    t = torch.sort(_f64(durations)).values
    return t.numel() - torch.searchsorted(t, _f64(when), right=True)


@dataclass(frozen=True)
class LogRank:
    statistic: float
    df: int
    p_value: float


def logrank_test(durations, events, groups) -> LogRank:
    """The log-rank test that ``groups`` (one label per row, at least two distinct) share one survival curve."""
    t, e = _f64(durations), _f64(events) > 0
    _, g = torch.unique(torch.as_tensor(groups).reshape(-1), return_inverse=True)
    k = int(g.max()) + 1 if g.numel() else 0
    if k < 2:
        raise ValueError("logrank_test: needs at least two groups")
    times, inverse = torch.unique(t, sorted=True, return_inverse=True)
    cell = inverse * k + g  # (time, group) -> flat index
    rows = torch.zeros(times.numel() * k, dtype=torch.float64).index_add_(0, cell, torch.ones_like(t))
    dead = torch.zeros_like(rows).index_add_(0, cell, e.double()).reshape(-1, k)
    rows = rows.reshape(-1, k)
    n_jt = rows.flip(0).cumsum(0).flip(0)  # at risk per group: duration >= t
    n_t, d_t = n_jt.sum(1), dead.sum(1)
    frac = n_jt / n_t[:, None]
    observed, expected = dead.sum(0), (d_t[:, None] * frac).sum(0)
    scale = torch.where(n_t > 1, d_t * (n_t - d_t) / (n_t - 1).clamp(min=1), 0.0)
    # V_jk = sum_t scale_t * frac_tj * (delta_jk - frac_tk): the hypergeometric covariance
    cov = torch.diag((scale[:, None] * frac).sum(0)) - torch.einsum("t,tj,tk->jk", scale, frac, frac)
    z = (observed - expected)[:-1]
    stat = float(z @ torch.linalg.pinv(cov[:-1, :-1]) @ z)
    df = k - 1
    p = float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                      torch.tensor(stat / 2, dtype=torch.float64)))
    return LogRank(stat, df, p)


def format_p(p: float) -> str:
    """A p-value as survival papers print it: two significant digits, or ``p < 0.0001``."""
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"
