"""Time-dependent survival metrics in torch: Uno's C, the (integrated) Brier score, cumulative/dynamic AUC.

Definitions and conventions follow scikit-survival exactly (``concordance_index_ipcw``,
``brier_score`` / ``integrated_brier_score``, ``cumulative_dynamic_auc``; the tests
compare to it within 1e-6), computed with tensor ops in float64 instead of Python loops:

* censoring weights come from the Kaplan-Meier estimate G of the *censoring*
  distribution fitted on the training rows (the reverse KM), read as a right-continuous
  step function; past the last training time G keeps its last value (scikit-survival
  refuses such times: choose horizons inside the training follow-up);
* risk ties within ``tied_tol`` count one half (C) or are merged into one threshold (AUC).

Each function takes test ``durations``/``events``, the training rows' ``train_durations``/
``train_events`` for the weights, and scores: a risk per row (higher = earlier event) or
survival probabilities S(t | x) per row and time.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray
_BLOCK_ELEMS = 4_000_000


def _f64(value: ArrayLike | list[float], device: torch.device | None = None) -> Tensor:
    return torch.as_tensor(value).detach().to(device or "cpu", torch.float64)


def kaplan_meier(durations: ArrayLike, events: ArrayLike, reverse: bool = False) -> tuple[Tensor, Tensor]:
    """(unique times, survival just after each) of the KM estimate; ``reverse``: of the censoring times.

    A leading (-inf, 1.0) point is included, so a step lookup before the first time gives 1."""
    t, e = _f64(durations).reshape(-1), _f64(events).reshape(-1) > 0
    times, inverse = torch.unique(t, sorted=True, return_inverse=True)
    count = torch.zeros_like(times).index_add_(0, inverse, torch.ones_like(t))
    dead = torch.zeros_like(times).index_add_(0, inverse, e.double())
    at_risk = t.numel() - torch.cumsum(count, 0) + count
    if reverse:
        if not bool((~e).any()):  # nothing censored: G = 1 everywhere
            return times, torch.ones_like(times)
        at_risk, dead = at_risk - dead, count - dead
    ratio = torch.where(dead != 0, dead / torch.where(at_risk > 0, at_risk, 1.0), torch.zeros_like(dead))
    prob = torch.cumprod(1.0 - ratio, 0)
    inf = torch.tensor([-float("inf")], dtype=torch.float64)
    return torch.cat([inf, times]), torch.cat([torch.ones(1, dtype=torch.float64), prob])


def step_at(times: Tensor, values: Tensor, at: Tensor) -> Tensor:
    """A right-continuous step function (``values`` from each of the sorted ``times`` on) read at ``at``."""
    idx = torch.searchsorted(times, at.contiguous(), right=True) - 1
    return values[idx.clamp(min=0)]


def uno_cindex(risk: ArrayLike, durations: ArrayLike, events: ArrayLike, train_durations: ArrayLike,
               train_events: ArrayLike, tau: float | None = None, tied_tol: float = 1e-8) -> float:
    """Uno's concordance (IPCW weights 1/G(t_i)^2), truncated at ``tau``: only events before tau count."""
    r, t, e = _f64(risk).reshape(-1), _f64(durations).reshape(-1), _f64(events).reshape(-1) > 0
    gt, gv = kaplan_meier(train_durations, train_events, reverse=True)
    g = step_at(gt, gv, t)
    keep = e if tau is None else e & (t < tau)
    if bool((g[keep] == 0).any()):
        raise ValueError("uno_cindex: the censoring survival function is zero at an event time; lower tau")
    w = torch.where(keep, 1.0 / g.clamp(min=1e-300) ** 2, torch.zeros_like(g))
    rows = torch.nonzero(keep).squeeze(1)  # other rows weigh 0: skip their O(n) comparisons
    num = den = torch.zeros((), dtype=torch.float64)
    step = max(1, _BLOCK_ELEMS // max(t.numel(), 1))
    for a in range(0, rows.numel(), step):
        i = rows[a : a + step]
        ti, ri, wi = t[i, None], r[i, None], w[i]
        comparable = (t[None, :] > ti) | ((t[None, :] == ti) & ~e[None, :])
        diff = r[None, :] - ri
        tied = diff.abs() <= tied_tol
        concordant = (diff < 0) & ~tied
        num = num + (wi * ((concordant & comparable).sum(1) + 0.5 * (tied & comparable).sum(1))).sum()
        den = den + (wi * comparable.sum(1)).sum()
    if float(den) == 0:
        raise ValueError("uno_cindex: no comparable pair with an event before tau")
    return float(num / den)


def brier_scores(surv: ArrayLike, times: ArrayLike, durations: ArrayLike, events: ArrayLike,
                 train_durations: ArrayLike, train_events: ArrayLike) -> Tensor:
    """IPCW Brier score at each of ``times``; ``surv`` (n, len(times)) holds S(time | x_i)."""
    s, tk = _f64(surv), _f64(times).reshape(-1)
    y, e = _f64(durations).reshape(-1), _f64(events).reshape(-1) > 0
    gt, gv = kaplan_meier(train_durations, train_events, reverse=True)
    inv_y, inv_t = _inverse(step_at(gt, gv, y)), _inverse(step_at(gt, gv, tk))
    case = ((y[:, None] <= tk[None, :]) & e[:, None]).double()
    control = (y[:, None] > tk[None, :]).double()
    return (s**2 * case * inv_y[:, None] + (1 - s) ** 2 * control * inv_t[None, :]).mean(0)


def _inverse(g: Tensor) -> Tensor:
    return torch.where(g > 0, 1.0 / g.clamp(min=1e-300), torch.zeros_like(g))  # G = 0: weight 0 (sksurv: 1/inf)


def integrated_brier_score(surv: ArrayLike, times: ArrayLike, durations: ArrayLike, events: ArrayLike,
                           train_durations: ArrayLike, train_events: ArrayLike) -> float:
    """Trapezoid integral of :func:`brier_scores` over ``times`` (sorted, >= 2), divided by its span."""
    tk = _f64(times).reshape(-1)
    if tk.numel() < 2 or bool((tk[1:] <= tk[:-1]).any()):
        raise ValueError("integrated_brier_score: times must be at least two increasing values")
    bs = brier_scores(surv, tk, durations, events, train_durations, train_events)
    return float(torch.trapezoid(bs, tk) / (tk[-1] - tk[0]))


def cumulative_dynamic_auc(risk: ArrayLike, times: ArrayLike, durations: ArrayLike, events: ArrayLike,
                           train_durations: ArrayLike, train_events: ArrayLike,
                           tied_tol: float = 1e-8) -> tuple[list[float], float]:
    """Cumulative/dynamic AUC at each time (cases: event by t, IPCW-weighted; controls: alive after t)
    and its mean weighted by the test set's KM drop over the times.

    ``risk``: (n,) or (n, len(times)) scores, higher = earlier event."""
    tk = _f64(times).reshape(-1)
    y, e = _f64(durations).reshape(-1), _f64(events).reshape(-1) > 0
    r = _f64(risk)
    r = r.reshape(-1, 1).expand(-1, tk.numel()) if r.dim() == 1 else r
    gt, gv = kaplan_meier(train_durations, train_events, reverse=True)
    g = step_at(gt, gv, y)
    ipcw = torch.where(e, 1.0 / g.clamp(min=1e-300), torch.zeros_like(g))
    scores = []
    for k in range(tk.numel()):
        order = torch.argsort(-r[:, k], stable=True)
        est, yk, ek, wk = r[order, k], y[order], e[order], ipcw[order]
        tp = torch.cumsum(((yk <= tk[k]) & ek).double() * wk, 0)
        fp = torch.cumsum((yk > tk[k]).double(), 0)
        tp, fp = tp / tp[-1], fp / fp[-1]
        last_of_tie = torch.ones_like(est, dtype=torch.bool)
        last_of_tie[:-1] = (est[1:] - est[:-1]).abs() > tied_tol  # keep the last row of each tied run
        zero = torch.zeros(1, dtype=torch.float64)
        scores.append(float(torch.trapezoid(torch.cat([zero, tp[last_of_tie]]), torch.cat([zero, fp[last_of_tie]]))))
    if tk.numel() == 1:
        return scores, scores[0]
    kt, kv = kaplan_meier(y, e)
    s = step_at(kt, kv, tk)
    drop = -torch.diff(torch.cat([torch.ones(1, dtype=torch.float64), s]))
    return scores, float((torch.tensor(scores, dtype=torch.float64) * drop).sum() / (1.0 - s[-1]))
