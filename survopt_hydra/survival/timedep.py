"""Time-dependent survival metrics in torch: Uno's C, the (integrated) Brier score, cumulative/dynamic AUC.

Definitions and conventions follow scikit-survival exactly (``concordance_index_ipcw``,
``brier_score`` / ``integrated_brier_score``, ``cumulative_dynamic_auc``; the tests
compare to it), computed with tensor ops in float64 instead of Python loops:

* censoring weights come from the Kaplan-Meier estimate G of the *censoring*
  distribution fitted on the training rows (the reverse KM), read as a right-continuous
  step function; past the last training time G keeps its last value (scikit-survival
  refuses such times: choose horizons inside the training follow-up);
* risk ties within ``tied_tol`` count one half (C) or are merged into one threshold (AUC).

Each function takes test ``durations``/``events``, the training rows' ``train_durations``/
``train_events`` for the weights, and scores: a risk per row (higher = earlier event) or
survival probabilities S(t | x) per row and time.

Cost at scale: Uno's C shares Harrell's O(n log n) pair counting (:class:`.metrics.ConcordanceCounts`,
the IPCW weight belongs to the event row); the AUC sorts the risks once per distinct score
column; the Brier score takes the survival matrix in row blocks of at most ``BLOCK_ELEMS``
elements, or a function that computes one block at a time, so 10^6 test patients x 50 times
never sit in memory at once. Tensors on a CUDA device (the risk or survival scores) are
evaluated there.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from .metrics import BLOCK_ELEMS, ConcordanceCounts, device_of, order_key

ArrayLike = Tensor | np.ndarray
#: S(t | x) as an (n, len(times)) array, or a function giving the rows of one slice (a block at a time).
SurvivalScores = ArrayLike | Callable[[slice], ArrayLike]


def _f64(value: ArrayLike | list[float], device: torch.device | None = None) -> Tensor:
    return torch.as_tensor(value).detach().to(device or "cpu", torch.float64)


def kaplan_meier(durations: ArrayLike, events: ArrayLike, reverse: bool = False,
                 device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """(unique times, survival just after each) of the KM estimate; ``reverse``: of the censoring times.

    A leading (-inf, 1.0) point is included, so a step lookup before the first time gives 1."""
    t, e = _f64(durations, device).reshape(-1), _f64(events, device).reshape(-1) > 0
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
    inf = torch.full((1,), -float("inf"), dtype=torch.float64, device=times.device)
    return torch.cat([inf, times]), torch.cat([torch.ones_like(inf), prob])


def _censoring(censoring: tuple[Tensor, Tensor] | None, train_durations: ArrayLike, train_events: ArrayLike,
               device: torch.device | None) -> tuple[Tensor, Tensor]:
    """G, the KM of the training rows' censoring: ``censoring`` when the caller fitted it once
    (``kaplan_meier(train_durations, train_events, reverse=True)``; every metric of a run shares it), else fitted."""
    if censoring is None:
        return kaplan_meier(train_durations, train_events, reverse=True, device=device)
    return censoring[0].to(device or "cpu", torch.float64), censoring[1].to(device or "cpu", torch.float64)


def step_at(times: Tensor, values: Tensor, at: Tensor) -> Tensor:
    """A right-continuous step function (``values`` from each of the sorted ``times`` on) read at ``at``."""
    idx = torch.searchsorted(times, at.contiguous(), right=True) - 1
    return values[idx.clamp(min=0)]


def uno_weights(durations: ArrayLike, events: ArrayLike, train_durations: ArrayLike, train_events: ArrayLike,
                tau: float | None = None, device: torch.device | None = None, *,
                censoring: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Uno's weight of each row as the event of a pair: 1 / G(t_i)^2 for an event before ``tau``, else 0.

    ``censoring`` (here and below): G already fitted, ``kaplan_meier(train_durations, train_events,
    reverse=True)``, so several metrics of one run fit it once (at 7 x 10^5 training rows, 0.1 s a fit)."""
    t, e = _f64(durations, device).reshape(-1), _f64(events, device).reshape(-1) > 0
    gt, gv = _censoring(censoring, train_durations, train_events, device)
    g = step_at(gt, gv, t)
    keep = e if tau is None else e & (t < tau)
    if bool((g[keep] == 0).any()):
        raise ValueError("uno_cindex: the censoring survival function is zero at an event time; lower tau")
    return torch.where(keep, 1.0 / g.clamp(min=1e-300) ** 2, torch.zeros_like(g))


def uno_cindex(risk: ArrayLike, durations: ArrayLike, events: ArrayLike, train_durations: ArrayLike,
               train_events: ArrayLike, tau: float | None = None, tied_tol: float = 1e-8, *,
               censoring: tuple[Tensor, Tensor] | None = None) -> float:
    """Uno's concordance (IPCW weights 1/G(t_i)^2), truncated at ``tau``: only events before tau count."""
    w = uno_weights(durations, events, train_durations, train_events, tau, device_of(risk), censoring=censoring)
    pairs = ConcordanceCounts(risk, durations, events, tied_tols=(tied_tol,), caller="uno_cindex")
    [(num, den)] = pairs.sums(event_weights=[w])
    if float(den) == 0:
        raise ValueError("uno_cindex: no comparable pair with an event before tau")
    return float(num / den)


def _rows_per_block(n_times: int) -> int:
    return max(1, BLOCK_ELEMS // max(n_times, 1))


def _brier_blocks(surv: SurvivalScores, times: ArrayLike, durations: ArrayLike, events: ArrayLike,
                  train_durations: ArrayLike, train_events: ArrayLike,
                  censoring: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Iterator[Tensor]]:
    """(times, then per row block: the (rows, len(times)) IPCW Brier terms whose column means are the scores)."""
    device = surv.device if isinstance(surv, Tensor) and surv.device.type == "cuda" else None
    tk = _f64(times, device).reshape(-1)
    y, e = _f64(durations, device).reshape(-1), _f64(events, device).reshape(-1) > 0
    gt, gv = _censoring(censoring, train_durations, train_events, device)
    inv_y, inv_t = _inverse(step_at(gt, gv, y)), _inverse(step_at(gt, gv, tk))
    n, step = y.numel(), _rows_per_block(tk.numel())

    def blocks() -> Iterator[Tensor]:
        for a in range(0, n, step):
            rows = slice(a, min(a + step, n))
            s = _f64(surv(rows) if callable(surv) else surv[rows], device).reshape(rows.stop - a, -1)
            if s.shape[1] != tk.numel():
                raise ValueError(f"brier score: {tk.numel()} times but survival scores for {s.shape[1]}")
            yb, eb = y[rows, None], e[rows, None]
            case = (yb <= tk[None, :]) & eb
            control = yb > tk[None, :]
            yield s.square() * case * inv_y[rows, None] + (1 - s).square() * control * inv_t[None, :]

    return tk, blocks()


def brier_scores(surv: SurvivalScores, times: ArrayLike, durations: ArrayLike, events: ArrayLike,
                 train_durations: ArrayLike, train_events: ArrayLike) -> Tensor:
    """IPCW Brier score at each of ``times``; ``surv`` (n, len(times)) holds S(time | x_i), or is a
    function of a row slice returning those rows (memory: one block of rows at a time)."""
    tk, blocks = _brier_blocks(surv, times, durations, events, train_durations, train_events)
    total = torch.zeros_like(tk)
    for block in blocks:
        total += block.sum(0)
    return total / max(_f64(durations).numel(), 1)


def _inverse(g: Tensor) -> Tensor:
    return torch.where(g > 0, 1.0 / g.clamp(min=1e-300), torch.zeros_like(g))  # G = 0: weight 0 (sksurv: 1/inf)


def _check_grid(tk: Tensor) -> None:
    if tk.numel() < 2 or bool((tk[1:] <= tk[:-1]).any()):
        raise ValueError("integrated_brier_score: times must be at least two increasing values")


def brier_contributions(surv: SurvivalScores, times: ArrayLike, durations: ArrayLike, events: ArrayLike,
                        train_durations: ArrayLike, train_events: ArrayLike, *,
                        censoring: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Each row's share of the integrated Brier score (its trapezoid integral over ``times`` divided
    by their span): the IBS is their mean, and a resample's IBS their count-weighted mean."""
    tk, blocks = _brier_blocks(surv, times, durations, events, train_durations, train_events, censoring)
    _check_grid(tk)
    dt = torch.diff(tk)
    trapezoid = torch.zeros_like(tk)  # integral of a piecewise-linear curve = sum of its values x these
    trapezoid[:-1] += dt / 2
    trapezoid[1:] += dt / 2
    return torch.cat([block @ trapezoid for block in blocks]) / (tk[-1] - tk[0])


def integrated_brier_score(surv: SurvivalScores, times: ArrayLike, durations: ArrayLike, events: ArrayLike,
                           train_durations: ArrayLike, train_events: ArrayLike) -> float:
    """Trapezoid integral of :func:`brier_scores` over ``times`` (sorted, >= 2), divided by its span."""
    return float(brier_contributions(surv, times, durations, events, train_durations, train_events).mean())


def cumulative_dynamic_auc(risk: ArrayLike, times: ArrayLike, durations: ArrayLike, events: ArrayLike,
                           train_durations: ArrayLike, train_events: ArrayLike,
                           tied_tol: float = 1e-8, *,
                           censoring: tuple[Tensor, Tensor] | None = None) -> tuple[list[float], float]:
    """Cumulative/dynamic AUC at each time (cases: event by t, IPCW-weighted; controls: alive after t)
    and its mean weighted by the test set's KM drop over the times.

    ``risk``: (n,) or (n, len(times)) scores, higher = earlier event. One sort per score column
    (one in all for (n,) scores), then O(n) per time; no (n, times) matrix is formed."""
    device = device_of(risk)
    tk = _f64(times, device).reshape(-1)
    y, e = _f64(durations, device).reshape(-1), _f64(events, device).reshape(-1) > 0
    r = _f64(risk, device)
    gt, gv = _censoring(censoring, train_durations, train_events, device)
    g = step_at(gt, gv, y)
    ipcw = torch.where(e, 1.0 / g.clamp(min=1e-300), torch.zeros_like(g))
    zero = torch.zeros(1, dtype=torch.float64, device=device)
    scores, order = [], None
    for k in range(tk.numel()):
        col = r.reshape(-1) if r.dim() == 1 else r[:, k]
        if order is None or r.dim() > 1:  # descending risk; the order inside a tied run does not matter
            order = torch.sort(order_key(col), descending=True).indices
            est = col[order]
            last_of_tie = torch.ones_like(est, dtype=torch.bool)
            last_of_tie[:-1] = (est[1:] - est[:-1]).abs() > tied_tol  # keep the last row of each tied run
            yk, ek, wk = y[order], e[order], ipcw[order]
        tp = torch.cumsum(((yk <= tk[k]) & ek) * wk, 0)
        fp = torch.cumsum((yk > tk[k]).double(), 0)
        tp, fp = tp / tp[-1], fp / fp[-1]
        scores.append(float(torch.trapezoid(torch.cat([zero, tp[last_of_tie]]), torch.cat([zero, fp[last_of_tie]]))))
    if tk.numel() == 1:
        return scores, scores[0]
    kt, kv = kaplan_meier(y, e, device=device)
    s = step_at(kt, kv, tk)
    drop = -torch.diff(torch.cat([torch.ones_like(zero), s]))
    return scores, float((torch.tensor(scores, dtype=torch.float64, device=device) * drop).sum() / (1.0 - s[-1]))
